#include "benchmarks/kernel/sgemm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <functional>
#include <iomanip>
#include <sstream>

#include "core/errors.h"

namespace longhaul::bench {
namespace {

// CBLAS's C interface (row-major, no transpose), found at run time so that no BLAS is a build
// dependency and none of them is loaded into torch's namespace.
using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                            int);
using SetThreads = void (*)(int);
constexpr int kRowMajor = 101, kNoTrans = 111;

struct CblasLibrary {
  const char* file;
  const char* set_threads;  // the library's own thread setter, or nullptr
};
constexpr CblasLibrary kLibraries[] = {
    {"libopenblas.so.0", "openblas_set_num_threads"},
    {"libblis.so.4", nullptr},
    {"libmkl_rt.so.2", "MKL_Set_Num_Threads"},
};

SgemmRate time_product(int64_t n, const TimingPlan& plan, c10::Device device, const std::string& library,
                       const std::function<void(const at::Tensor&, const at::Tensor&, at::Tensor&)>& product) {
  const auto opts = at::TensorOptions(at::kFloat).device(device);
  at::Tensor a = at::rand({n, n}, opts), b = at::rand({n, n}, opts), c = at::empty({n, n}, opts);
  const PhaseSamples samples = time_phases(plan, [&] {
    Stopwatch watch(device);
    product(a, b, c);
    return std::vector<double>{watch.lap()};
  });
  const double ms = median_of_first_phases(samples, 1);
  return {n, ms, 2.0 * double(n) * double(n) * double(n) / (ms * 1e-3) / 1e9, library};
}

}  // namespace

std::string SgemmYardstick::summary() const {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1);
  for (size_t i = 0; i < candidates.size(); ++i)
    os << (i ? ", " : "") << candidates[i].library << " " << candidates[i].gflops;
  os << " GFLOP/s";
  return os.str();
}

SgemmYardstick measure_sgemm(c10::Device device, int64_t n, const TimingPlan& plan) {
  LH_CHECK(n > 0, "bench kernel: the sgemm size must be positive, got ", n);
  SgemmYardstick y;
  y.candidates.push_back(time_product(n, plan, device, "torch",
                                      [](const at::Tensor& a, const at::Tensor& b, at::Tensor& c) { at::mm_out(c, a, b); }));
  if (device.is_cpu()) {
    for (const auto& lib : kLibraries) {
      void* handle = dlopen(lib.file, RTLD_NOW | RTLD_LOCAL);
      if (!handle) continue;
      auto sgemm = reinterpret_cast<CblasSgemm>(dlsym(handle, "cblas_sgemm"));
      if (sgemm) {
        if (lib.set_threads)
          if (auto set = reinterpret_cast<SetThreads>(dlsym(handle, lib.set_threads))) set(at::get_num_threads());
        const int m = static_cast<int>(n);
        y.candidates.push_back(time_product(n, plan, device, lib.file,
                                            [&](const at::Tensor& a, const at::Tensor& b, at::Tensor& c) {
                                              sgemm(kRowMajor, kNoTrans, kNoTrans, m, m, m, 1.0f, a.data_ptr<float>(), m,
                                                    b.data_ptr<float>(), m, 0.0f, c.data_ptr<float>(), m);
                                            }));
      }
      dlclose(handle);
    }
  }
  y.best = y.candidates.front();
  for (const auto& c : y.candidates)
    if (c.gflops > y.best.gflops) y.best = c;
  return y;
}

}  // namespace longhaul::bench

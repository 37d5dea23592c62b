#include "benchmarks/kernel/sgemm.h"

#include <ATen/ATen.h>

#include "core/errors.h"

namespace longhaul::bench {

SgemmRate measure_sgemm(c10::Device device, int64_t n, const TimingPlan& plan) {
  LH_CHECK(n > 0, "bench kernel: the sgemm size must be positive, got ", n);
  const auto opts = at::TensorOptions(at::kFloat).device(device);
  at::Tensor a = at::rand({n, n}, opts), b = at::rand({n, n}, opts), c = at::empty({n, n}, opts);
  const PhaseSamples samples = time_phases(plan, [&] {
    Stopwatch watch(device);
    at::mm_out(c, a, b);
    return std::vector<double>{watch.lap()};
  });
  const double ms = median_of_first_phases(samples, 1);
  return {n, ms, 2.0 * double(n) * double(n) * double(n) / (ms * 1e-3) / 1e9};
}

}  // namespace longhaul::bench

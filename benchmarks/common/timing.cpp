#include "benchmarks/common/timing.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <chrono>

#include "benchmarks/common/report.h"
#include "core/errors.h"

namespace longhaul::bench {
namespace {
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

PhaseSamples time_phases(const TimingPlan& plan, const std::function<std::vector<double>()>& once) {
  LH_CHECK(plan.warmup >= 0 && plan.iters >= 1, "timing: need warmup >= 0 and iters >= 1, got warmup ",
           plan.warmup, ", iters ", plan.iters);
  for (int i = 0; i < plan.warmup; ++i) once();
  PhaseSamples samples;
  double spent_ms = 0;
  for (int i = 0; i < plan.iters; ++i) {
    samples.push_back(once());
    for (double t : samples.back()) spent_ms += t;
    if (spent_ms >= plan.budget_s * 1e3) break;
  }
  return samples;
}

double median_of_first_phases(const PhaseSamples& samples, size_t n_phases) {
  std::vector<double> sums;
  for (const auto& run : samples) {
    LH_CHECK(run.size() >= n_phases, "timing: a run has ", run.size(), " phases, expected at least ", n_phases);
    double s = 0;
    for (size_t p = 0; p < n_phases; ++p) s += run[p];
    sums.push_back(s);
  }
  return median(sums);
}

void synchronize(const c10::Device& device) {
  if (device.is_cpu()) return;
  c10::impl::getDeviceGuardImpl(device.type())->synchronizeDevice(device.index() < 0 ? 0 : device.index());
}

Stopwatch::Stopwatch(c10::Device device) : device_(device) {
  synchronize(device_);
  last_ms_ = now_ms();
}

double Stopwatch::lap() {
  synchronize(device_);
  const double t = now_ms(), dt = t - last_ms_;
  last_ms_ = t;
  return dt;
}

}  // namespace longhaul::bench

#include "benchmarks/common/timing.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <chrono>
#include <cmath>

#include "benchmarks/common/report.h"
#include "core/errors.h"
#include "core/stream_event.h"

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
    for (double t : samples.back())
      if (std::isfinite(t)) spent_ms += t;  // NaN: a phase this run did not have
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

size_t StreamMarks::mark() {
  if (device_.is_cpu()) {
    wall_ms_.push_back(now_ms());
    return wall_ms_.size() - 1;
  }
  events_.push_back(record_event_on(device_));
  return events_.size() - 1;
}

double StreamMarks::ms(size_t from, size_t to) {
  const size_t n = device_.is_cpu() ? wall_ms_.size() : events_.size();
  LH_CHECK(from <= to && to < n, "timing: marks ", from, " to ", to, " asked of ", n, " marks");
  if (device_.is_cpu()) return wall_ms_[to] - wall_ms_[from];
  events_[to].synchronize();
  return events_[from].elapsedTime(events_[to]);
}

}  // namespace longhaul::bench

#include "core/virtual_clock.h"

namespace longhaul::virtual_clock {
namespace {
thread_local RankClock* t_clock = nullptr;
}

RankClock* current() { return t_clock; }
void set_current(RankClock* clock) { t_clock = clock; }

void charge_compute(double seconds) {
  if (!t_clock) return;
  t_clock->now += seconds;
  t_clock->compute_s += seconds;
}

void charge_dense(double flops, double bytes, double fresh_bytes) {
  if (!t_clock) return;
  const KernelModel& k = t_clock->kernel;
  charge_compute(flops / k.dense_flops_per_s + bytes / k.memory_bytes_per_s +
                 (k.first_touch_bytes_per_s > 0 ? fresh_bytes / k.first_touch_bytes_per_s : 0.0));
}

}  // namespace longhaul::virtual_clock

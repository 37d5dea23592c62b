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

void charge_dense(double flops, double bytes) {
  if (!t_clock) return;
  charge_compute(flops / t_clock->kernel.dense_flops_per_s + bytes / t_clock->kernel.memory_bytes_per_s);
}

}  // namespace longhaul::virtual_clock

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

}  // namespace longhaul::virtual_clock

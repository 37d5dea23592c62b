#include "core/data_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>

#include "core/resident_memory.h"

namespace longhaul {

int64_t data_segment_bytes() {
  const double bytes = process_status_bytes("VmData");
  return std::isnan(bytes) ? -1 : static_cast<int64_t>(bytes);
}

ScopedDataLimit::ScopedDataLimit(int64_t growth_bytes) {
  const int64_t now = data_segment_bytes();
  rlimit old{};
  if (growth_bytes <= 0 || now < 0 || ::getrlimit(RLIMIT_DATA, &old) != 0) return;
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(now + growth_bytes);
  if (old.rlim_cur != RLIM_INFINITY) tight.rlim_cur = std::min(tight.rlim_cur, old.rlim_cur);
  if (old.rlim_max != RLIM_INFINITY) tight.rlim_cur = std::min(tight.rlim_cur, old.rlim_max);
  if (::setrlimit(RLIMIT_DATA, &tight) != 0) return;
  old_soft_ = old.rlim_cur;
  active_ = true;
}

ScopedDataLimit::~ScopedDataLimit() {
  if (!active_) return;
  rlimit r{};
  if (::getrlimit(RLIMIT_DATA, &r) != 0) return;
  r.rlim_cur = static_cast<rlim_t>(old_soft_);
  ::setrlimit(RLIMIT_DATA, &r);
}

}  // namespace longhaul

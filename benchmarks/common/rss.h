// Peak resident-memory growth of the process over a scope, from /proc/self/status (Linux).
#pragma once

namespace longhaul::bench {

// MemAvailable of this machine in bytes, from /proc/meminfo (NaN without it).
double available_memory_bytes();

// Construct before the work, read mib() after: the peak resident set (VmHWM) during the scope
// minus the resident set (VmRSS) at construction, in MiB. The kernel's high-water mark is reset at
// construction (/proc/self/clear_refs, "5"); where that is refused, the growth of VmHWM over the
// scope is reported instead (a lower bound) and exact() is false. NaN without /proc.
class PeakRssGrowth {
 public:
  PeakRssGrowth();
  double mib() const;
  bool exact() const { return reset_; }

 private:
  double rss_before_mib_, hwm_before_mib_;
  bool reset_;
};

}  // namespace longhaul::bench

// The process's resident memory (Linux /proc): its peak growth over a scope (the benchmarks'
// memory columns, longhaul train's preflight) and the machine's available memory.
#pragma once

#include <string>

namespace longhaul {

// A "Key:   123 kB" line of /proc/self/status (VmRSS, VmHWM, VmData…) in bytes; NaN when absent.
double process_status_bytes(const std::string& key);

// What the host may still give this process, in bytes: MemAvailable, or less under a memory
// cgroup's limit (host_memory.h); NaN without /proc.
double available_memory_bytes();

// Construct before the work, read mib() after: the peak resident set (VmHWM) during the scope
// minus the resident set (VmRSS) at construction, in MiB. The kernel's high-water mark is reset at
// construction (/proc/self/clear_refs, "5"); where that is refused, the growth of VmHWM over the
// scope is reported instead (a lower bound) and exact() is false. NaN without /proc.
class PeakRssGrowth {
 public:
  PeakRssGrowth();
  double mib() const;
  // VmRSS at construction, MiB: mib() above it is the scope's peak resident set.
  double before_mib() const { return rss_before_mib_; }
  bool exact() const { return reset_; }

 private:
  double rss_before_mib_, hwm_before_mib_;
  bool reset_;
};

}  // namespace longhaul

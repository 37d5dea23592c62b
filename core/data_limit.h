// A ceiling on this process's data segment (RLIMIT_DATA: the heap and private writable mappings,
// which every malloc'd block lives in) for a scope, so that memory the host cannot give becomes a
// failed allocation, which torch reports as out of memory, instead of a SIGKILL from the OOM
// killer on a host that overcommits. The limit is the process's: one thread sets it for all.
#pragma once

#include <cstdint>

namespace longhaul {

// VmData of /proc/self/status in bytes (what RLIMIT_DATA counts); -1 where it cannot be read.
int64_t data_segment_bytes();

class ScopedDataLimit {
 public:
  // Lets the data segment grow by at most `growth_bytes` over its size now (never looser than a
  // soft limit already set); restores the previous limit at the end of the scope. Inactive (no
  // limit set) where VmData or getrlimit/setrlimit are unavailable, or for a growth <= 0.
  explicit ScopedDataLimit(int64_t growth_bytes);
  ~ScopedDataLimit();
  ScopedDataLimit(const ScopedDataLimit&) = delete;
  ScopedDataLimit& operator=(const ScopedDataLimit&) = delete;

  bool active() const { return active_; }

 private:
  bool active_ = false;
  uint64_t old_soft_ = 0;
};

}  // namespace longhaul

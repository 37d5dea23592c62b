// How much more memory this process's host may give it before the kernel's OOM killer steps in:
// the machine's MemAvailable, and under a memory cgroup (Slurm's task/cgroup, Docker, Kubernetes)
// that cgroup's limit and those of the cgroups above it, whichever leaves least. A job limited to
// 8 GiB on a 512 GiB node sees 8 GiB here, where /proc/meminfo alone would say 500.
#pragma once

#include <string>

namespace longhaul {

struct HostMemory {
  double available_bytes = 0;  // NaN where nothing could be read (no /proc)
  // What bounds it: "MemAvailable", or "the memory cgroup /job_1/step_0: limit 8.00 GiB, 1.20 GiB in use".
  std::string bound;
  std::string cgroup;  // this process's memory cgroup as /proc/self/cgroup names it; empty without one
};

// `root` stands for "/" when reading /proc and the cgroup file systems (tests give a directory
// laid out like one). A cgroup's use counts what it cannot give back without swapping: its
// charged memory less the page cache on its file LRU lists (cgroup v1 memory.usage_in_bytes less
// total_active_file and total_inactive_file; v2 memory.current less active_file and
// inactive_file). Unreadable or malformed cgroup files are passed over (MemAvailable stands).
HostMemory host_memory(const std::string& root = "");

// "512.0 MiB" below 1 GiB, "3.25 GiB" from there, "? MiB" for NaN: how the tool prints memory.
std::string memory_size(double bytes);

}  // namespace longhaul

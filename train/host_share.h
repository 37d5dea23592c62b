// Each process's share of its host's memory during the memory preflight and the training steps on
// the CPU. The processes of a run that sit on one host, in one memory cgroup, draw on the same
// memory at once, so each may grow by the memory the host may still give (core/host_memory.h)
// over their number; the preflight and every step hold each to its share (core/data_limit.h), so
// that a step the host cannot hold fails as an allocation, named, rather than under the kernel's
// OOM killer on a host that overcommits.
#pragma once

#include <string>

#include "runtime/comm/comm.h"

namespace longhaul::train {

struct HostShare {
  bool limited = false;   // false: thread-ranks share this process (a limit is the process's), or nothing known
  double bytes = 0;       // what this process may add: available_bytes / processes
  double available_bytes = 0;
  int processes = 1;      // this run's processes on this host in this memory cgroup
  std::string bound;      // what bounds available_bytes (HostMemory::bound)
  std::string why_not;    // when not limited: why
};

// A collective over `world` (an all-gather of each rank's host, cgroup and process id).
HostShare host_share(Communicator& world);

// The same processes' share of what the host may give now (read again, no collective): a step's
// ceiling follows the host's memory as other jobs take or free it.
HostShare host_share_now(const HostShare& start);

// Starts ATen's thread pool, if it has not started, before a ceiling is set: an OpenMP team
// started under one might not get its threads' stacks.
void start_thread_pool();

// "each process held to 11.35 GiB: 22.69 GiB available (MemAvailable) over 2 processes on this host".
std::string describe(const HostShare& s);
// A step's ceiling, for a process that held `held_bytes` of data segment when it began: "each
// process might add 1.89 GiB to the 21.54 GiB it held: 1.89 GiB available (MemAvailable) over 1
// process on this host".
std::string describe_step_share(double held_bytes, const HostShare& s);

}  // namespace longhaul::train

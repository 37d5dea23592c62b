#include "train/host_share.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>

#include "core/errors.h"
#include "core/host_memory.h"

namespace longhaul::train {
namespace {

// Names this machine: the host name and the kernel's boot id (two containers may share a name).
int64_t host_key() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  return static_cast<int64_t>(std::hash<std::string>{}(std::string(name) + "/" + boot));
}

}  // namespace

HostShare host_share(Communicator& world) {
  const HostMemory host = host_memory();
  HostShare s;
  s.available_bytes = host.available_bytes;
  s.bound = host.bound;
  const int64_t mine[3] = {host_key(), static_cast<int64_t>(std::hash<std::string>{}(host.cgroup)),
                           static_cast<int64_t>(::getpid())};
  at::Tensor in = at::tensor(at::ArrayRef<int64_t>(mine, 3), at::kLong);
  at::Tensor all = at::empty({int64_t(world.size()) * 3}, at::kLong);
  world.all_gather(all, in)->wait();
  const int64_t* v = all.data_ptr<int64_t>();
  std::set<int64_t> pids;
  int same_process = 0;
  for (int r = 0; r < world.size(); ++r) {
    if (v[3 * r] != mine[0]) continue;
    if (v[3 * r + 2] == mine[2]) ++same_process;  // this process (and its thread-ranks)
    if (v[3 * r + 1] == mine[1]) pids.insert(v[3 * r + 2]);
  }
  s.processes = static_cast<int>(pids.size());
  if (same_process > 1) {
    s.why_not = "thread-ranks share this process";
  } else if (!(s.available_bytes > 0)) {
    s.why_not = "the host's available memory is unknown";
  } else {
    s.limited = true;
    s.bytes = s.available_bytes / s.processes;
  }
  return s;
}

HostShare host_share_now(const HostShare& start) {
  if (!start.limited) return start;
  const HostMemory host = host_memory();
  HostShare s = start;
  s.available_bytes = host.available_bytes;
  s.bound = host.bound;
  s.bytes = std::max(0.0, host.available_bytes) / s.processes;
  return s;
}

void start_thread_pool() { at::parallel_for(0, at::get_num_threads(), 1, [](int64_t, int64_t) {}); }

std::string describe_step_share(double held_bytes, const HostShare& s) {
  return detail::str_cat("each process might add ", memory_size(s.bytes), " to the ", memory_size(held_bytes),
                         " it held: ", memory_size(s.available_bytes), " available (", s.bound, ") over ", s.processes,
                         s.processes == 1 ? " process" : " processes", " on this host");
}

std::string describe(const HostShare& s) {
  if (!s.limited) return "no per-process ceiling (" + s.why_not + ")";
  return detail::str_cat("each process held to ", memory_size(s.bytes), ": ", memory_size(s.available_bytes),
                         " available (", s.bound, ") over ", s.processes, s.processes == 1 ? " process" : " processes",
                         " on this host");
}

}  // namespace longhaul::train

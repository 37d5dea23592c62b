#include "launch/world.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sched.h>
#include <unistd.h>

#include <ATen/DeviceAccelerator.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "longhaul/config.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/comm/nccl_order/communicator.h"
#include "runtime/comm/routed/communicator.h"
#if LONGHAUL_WITH_NCCL
#include "runtime/comm/nccl/communicator.h"
#endif
#include "runtime/errors.h"
#if LONGHAUL_WITH_MPI
#include "runtime/comm/mpi/communicator.h"
#endif
#if LONGHAUL_WITH_C10D
#include "runtime/comm/c10d/communicator.h"
#endif

namespace longhaul {
namespace {
const char* getenv_lookup(const char* name) { return std::getenv(name); }

// An integer environment variable; InvalidArgument when set but not an integer.
std::optional<int> env_int(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (errno || *end || x < INT_MIN || x > INT_MAX)
    throw InvalidArgument(detail::str_cat("environment variable ", name, "='", v, "' is not an integer"));
  return static_cast<int>(x);
}
std::optional<int> first_of(const EnvLookup& env, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (auto v = env_int(env, n)) return v;
  return std::nullopt;
}
std::string env_str(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  return v ? v : "";
}

// rank in [0, size), local_rank in [0, local_size).
void check_ranks(const LaunchInfo& l, const std::string& from) {
  if (l.size < 1) throw InvalidArgument(detail::str_cat(from, ": world size ", l.size, " must be at least 1"));
  if (l.rank < 0 || l.rank >= l.size)
    throw InvalidArgument(detail::str_cat(from, ": rank ", l.rank, " is outside [0, world size ", l.size, ")"));
  if (l.local_size < 1 || l.local_rank < 0 || l.local_rank >= l.local_size)
    throw InvalidArgument(detail::str_cat(from, ": local rank ", l.local_rank, " is outside [0, local size ",
                                          l.local_size, ")"));
}

// Slurm's SLURM_TASKS_PER_NODE: "4(x2),3" -> 4 (the first node's count).
int first_count(const std::string& s) {
  int n = 0;
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) n = n * 10 + (s[i++] - '0');
  return n > 0 ? n : 1;
}
}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']') --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  const std::string first = nodelist.substr(0, end);
  const size_t open = first.find('[');
  if (open == std::string::npos) return first;
  // prefix[003-005,9]suffix -> prefix003suffix (zero padding kept as written).
  const size_t close = first.find(']', open);
  if (close == std::string::npos)
    throw InvalidArgument("Slurm node list '" + nodelist + "' has an unclosed '['");
  std::string range = first.substr(open + 1, close - open - 1);
  range = range.substr(0, range.find_first_of(",-"));
  return first.substr(0, open) + range + first.substr(close + 1);
}

LaunchInfo detect_launch(const EnvLookup& env) {
  LaunchInfo l;
  const bool mpi = env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMIX_RANK") || env("MPI_LOCALNRANKS");
  const bool torchelastic = env("TORCHELASTIC_RUN_ID") || env("TORCHELASTIC_RESTART_COUNT");
  const auto t_rank = env_int(env, "RANK"), t_size = env_int(env, "WORLD_SIZE");
  const auto s_rank = env_int(env, "SLURM_PROCID");
  const auto s_size = first_of(env, {"SLURM_NTASKS", "SLURM_NPROCS"});
  if (t_rank.has_value() != t_size.has_value())
    throw InvalidArgument(detail::str_cat("RANK and WORLD_SIZE must be set together (RANK ",
                                          t_rank ? "set" : "unset", ", WORLD_SIZE ", t_size ? "set" : "unset", ")"));
  if (torchelastic && !t_rank)
    throw InvalidArgument("TORCHELASTIC_* is set but RANK/WORLD_SIZE are not: a torchrun launch without its ranks");
  if (mpi && torchelastic)
    throw InvalidArgument("the environment says both mpirun (OMPI_COMM_WORLD_*/PMI_*) and torchrun "
                          "(TORCHELASTIC_*) started this process; launch with one of them");
  const std::string master = env_str(env, "MASTER_ADDR");
  const auto master_port = env_int(env, "MASTER_PORT");
  if (master_port && (*master_port <= 0 || *master_port > 65535))
    throw InvalidArgument(detail::str_cat("MASTER_PORT=", *master_port, " is outside (0, 65536)"));
  if (mpi) {
    l.launcher = "mpirun";
    l.rank = first_of(env, {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"}).value_or(0);
    l.size = first_of(env, {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}).value_or(1);
    l.local_rank = first_of(env, {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}).value_or(0);
    l.local_size = first_of(env, {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}).value_or(1);
    l.store_host = master;
    l.store_port = master_port.value_or(kDefaultStorePort);
    if (!env("OMPI_COMM_WORLD_SIZE") && !env("PMI_SIZE")) l.size = std::max(l.size, l.rank + 1);
    check_ranks(l, "mpirun's variables");
    return l;
  }
  if (t_rank) {
    l.launcher = torchelastic ? "torchrun" : "env";
    l.rank = *t_rank;
    l.size = *t_size;
    l.local_rank = env_int(env, "LOCAL_RANK").value_or(0);
    l.local_size = env_int(env, "LOCAL_WORLD_SIZE").value_or(1);
    // Under torchrun inside a Slurm job, SLURM_PROCID counts srun tasks, not ranks; set by hand,
    // RANK must agree with Slurm.
    if (!torchelastic && s_rank && s_size && (*s_rank != l.rank || *s_size != l.size))
      throw InvalidArgument(detail::str_cat("RANK/WORLD_SIZE (", l.rank, "/", l.size, ") contradict SLURM_PROCID/",
                                            "SLURM_NTASKS (", *s_rank, "/", *s_size, ")"));
    l.store_host = master;
    if (l.store_host.empty()) {
      const std::string nodes = env_str(env, "SLURM_STEP_NODELIST").empty() ? env_str(env, "SLURM_NODELIST")
                                                                            : env_str(env, "SLURM_STEP_NODELIST");
      if (!nodes.empty()) l.store_host = first_slurm_host(nodes);
    }
    if (l.store_host.empty() && l.size > 1)
      throw InvalidArgument(detail::str_cat("RANK/WORLD_SIZE are set (rank ", l.rank, " of ", l.size,
                                            ") but MASTER_ADDR is not: the ranks have no store to meet at"));
    l.store_port = master_port.value_or(kDefaultStorePort);
    const std::string agent = env_str(env, "TORCHELASTIC_USE_AGENT_STORE");
    l.agent_store = agent == "True" || agent == "true" || agent == "1";
    l.restart = env_int(env, "TORCHELASTIC_RESTART_COUNT").value_or(0);
    check_ranks(l, torchelastic ? "torchrun's variables" : "RANK/WORLD_SIZE");
    return l;
  }
  if (s_rank || s_size) {
    if (!s_rank || !s_size)
      throw InvalidArgument("SLURM_PROCID and SLURM_NTASKS must be set together (srun sets both)");
    l.launcher = "slurm";
    l.rank = *s_rank;
    l.size = *s_size;
    l.local_rank = first_of(env, {"SLURM_LOCALID", "SLURM_LOCAL_ID"}).value_or(0);
    if (auto n = env_int(env, "SLURM_NTASKS_PER_NODE"))
      l.local_size = *n;
    else if (const char* tpn = env("SLURM_TASKS_PER_NODE"))
      l.local_size = first_count(tpn);
    l.store_host = master;
    if (l.store_host.empty()) {
      std::string nodes = env_str(env, "SLURM_STEP_NODELIST");
      if (nodes.empty()) nodes = env_str(env, "SLURM_NODELIST");
      if (nodes.empty() && l.size > 1)
        throw InvalidArgument("Slurm launch without MASTER_ADDR, SLURM_STEP_NODELIST or SLURM_NODELIST: no host "
                              "for the store");
      l.store_host = nodes.empty() ? "127.0.0.1" : first_slurm_host(nodes);
    }
    const int job = env_int(env, "SLURM_JOB_ID").value_or(0);
    l.store_port = master_port.value_or(kSlurmBasePort + job % 10000);
    check_ranks(l, "Slurm's variables");
    return l;
  }
  return l;
}

std::string resolve_backend(const std::string& requested, const LaunchInfo& l) {
  if (requested == "auto") {
    if (l.launcher == "mpirun") return "mpi";
    return l.size > 1 || l.launcher != "single process" ? "c10d" : "local";
  }
  if (requested == "local") {
    if (l.size > 1)
      throw InvalidArgument(detail::str_cat("backend local is a one-process world, but ", l.launcher, " started ",
                                            l.size, " ranks"));
    return requested;
  }
  if (requested == "mpi") {
    if (l.launcher != "mpirun" && l.size > 1)
      throw InvalidArgument(detail::str_cat("backend mpi needs an MPI launcher (mpirun, srun with PMI), but ",
                                            l.launcher, " started these ", l.size, " ranks; use --backend c10d"));
    return requested;
  }
  if (requested == "nccl") {
    resolve_backend("auto", l);  // the bootstrap's own checks
    return requested;
  }
  if (requested == "c10d") {
    if (l.size > 1 && l.store_host.empty())
      throw InvalidArgument(detail::str_cat("backend c10d with ", l.size, " ranks (", l.launcher,
                                            ") needs MASTER_ADDR (and MASTER_PORT) for its store"));
    return requested;
  }
  throw InvalidArgument("unknown backend '" + requested + "', expected auto, mpi, c10d, nccl or local");
}

bool uses_nccl(const std::string& requested, const LaunchInfo& l, int visible_devices, bool nccl_built) {
  if (requested == "nccl") return true;
  return requested == "auto" && nccl_built && l.size > 1 && visible_devices > 0 && l.local_size <= visible_devices;
}

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

World::World(CommPtr comm, std::string launcher, int local_rank, int local_size, int threads,
             std::string thread_reason, int device)
    : comm_(std::move(comm)),
      launcher_(std::move(launcher)),
      local_rank_(local_rank),
      local_size_(local_size),
      threads_(threads),
      thread_reason_(std::move(thread_reason)),
      device_(device) {}

World::~World() {
#if LONGHAUL_WITH_MPI
  const bool mpi = (comm_ && comm_->backend() == "mpi") || (host_comm_ && host_comm_->backend() == "mpi");
  comm_.reset();
  host_comm_.reset();
  if (mpi) shutdown_mpi();
#endif
}

std::string World::config_line() const {
  return detail::str_cat("longhaul ", LONGHAUL_VERSION, ": rank ", rank(), "/", size(), " (local ", local_rank_, "/",
                         local_size_, "), launcher ", launcher_, ", backend ", comm_->backend(), ", threads ",
                         threads_, " (", thread_reason_, "), comm timeout ", comm_->timeout().count() / 1000.0,
                         " s, torch ", LONGHAUL_TORCH_VERSION, ", cuda ", LONGHAUL_WITH_CUDA ? "built" : "not built",
                         device_ >= 0 ? detail::str_cat(", device cuda:", device_) : std::string());
}

World init(const InitOptions& options) {
  CommOptions comm_options;
  comm_options.timeout = options.timeout;
  const LaunchInfo launch = detect_launch(getenv_lookup);
  const std::string requested = resolve_backend(options.backend, launch);
  const std::string backend = requested == "nccl" ? resolve_backend("auto", launch) : requested;

  // The GPU of this rank: local_rank % visible devices, when CUDA is present.
  int device = -1, visible = 0;
  if (at::hasCUDA()) {
    visible = static_cast<int>(at::accelerator::deviceCount());
    if (visible > 0) {
      device = launch.local_rank % visible;
      at::accelerator::setDeviceIndex(static_cast<c10::DeviceIndex>(device));
    }
  }

  CommPtr comm;
  if (backend == "mpi") {
#if LONGHAUL_WITH_MPI
    comm = create_mpi_world(comm_options);
#else
    throw Unsupported("backend mpi requested (or launched by mpirun) but this build of longhaul has no MPI; "
                      "configure with LONGHAUL_WITH_MPI=ON, or use --backend c10d with MASTER_ADDR/MASTER_PORT");
#endif
  } else if (backend == "c10d") {
#if LONGHAUL_WITH_C10D
    // One rank without a store address serves itself on the loopback, on any free port.
    const bool alone = launch.size == 1 && launch.store_host.empty();
    TcpStoreOptions store;
    store.rank0_serves = !launch.agent_store;
    if (launch.agent_store) store.prefix = detail::str_cat("longhaul/attempt", launch.restart);
    comm = create_c10d_world_tcp(alone ? "127.0.0.1" : launch.store_host, alone ? 0 : launch.store_port, launch.rank,
                                 launch.size, comm_options, store);
#else
    throw Unsupported("backend c10d requested (or launched by torchrun/Slurm) but this build of longhaul has no "
                      "c10d; configure with LONGHAUL_WITH_C10D=ON");
#endif
  } else {
    comm = create_local_world(1, comm_options)[0];
  }
  if (comm->size() != launch.size && launch.launcher != "single process")
    throw CommError(detail::str_cat("backend ", comm->backend(), " built a world of ", comm->size(), " ranks but ",
                                    launch.launcher, " says ", launch.size));

  CommPtr host;
  if (uses_nccl(requested, launch, visible, LONGHAUL_WITH_NCCL)) {
#if LONGHAUL_WITH_NCCL
    LH_CHECK(device >= 0, "backend nccl needs a CUDA device, but torch sees none on this rank (",
             launch.launcher, " rank ", launch.rank, ")");
    NcclOptions nccl;
    nccl.device = device;
    nccl.comm = comm_options;
    host = comm;
    comm = create_routed_comm(host, create_nccl_world(*host, nccl));
#else
    throw Unsupported("backend nccl requested but this build of longhaul has no NCCL; configure with "
                      "LONGHAUL_WITH_NCCL=ON (needs CUDA)");
#endif
  }
  if (options.nccl_order || nccl_order_requested_by_env()) comm = with_nccl_order(comm);
  const int local_rank = launch.local_rank, local_size = launch.local_size;
  const std::string launcher = launch.launcher;
  int threads = options.threads;
  std::string reason = "given";
  if (threads <= 0) {
    const int cpus = affinity_cpus();
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    // Ranks left unbound (--bind-to none) all see every CPU: share them out.
    const int sharing = (cpus == online && local_size > 1) ? local_size : 1;
    threads = std::max(1, cpus / sharing);
    reason = sharing > 1 ? detail::str_cat("affinity ", cpus, " CPUs shared by ", sharing, " local ranks")
                         : detail::str_cat("affinity ", cpus, " CPUs");
  }
  at::set_num_threads(threads);
  World world(comm, launcher, local_rank, local_size, threads, reason, device);
  if (host) world.set_host_comm(host);
  if (options.log_config && world.rank() == 0) std::cerr << world.config_line() << std::endl;
  return world;
}

}  // namespace longhaul

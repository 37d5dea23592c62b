#include "launch/launcher.h"

#include <sched.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <optional>

#include "core/enum_names.h"
#include "core/errors.h"

namespace longhaul {
namespace {

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

}  // namespace

int slurm_tasks_on_node(const std::string& tasks_per_node, int node) {
  // Entries "N" (one node) or "N(xK)" (K nodes), comma-separated, in node order.
  auto bad = [&](const std::string& why) {
    return InvalidArgument(detail::str_cat("Slurm's tasks per node '", tasks_per_node, "' ", why));
  };
  int first = node;
  size_t i = 0;
  auto number = [&] {
    int n = 0;
    const size_t start = i;
    while (i < tasks_per_node.size() && std::isdigit(static_cast<unsigned char>(tasks_per_node[i])))
      n = n * 10 + (tasks_per_node[i++] - '0');
    if (i == start) throw bad("is not N or N(xK), ...");
    return n;
  };
  while (i < tasks_per_node.size()) {
    const int n = number();
    int nodes = 1;
    if (tasks_per_node.compare(i, 2, "(x") == 0) {
      i += 2;
      nodes = number();
      if (i >= tasks_per_node.size() || tasks_per_node[i] != ')') throw bad("misses ')'");
      ++i;
    }
    if (first < nodes) return n;
    first -= nodes;
    if (i < tasks_per_node.size() && tasks_per_node[i++] != ',') throw bad("is not N or N(xK), ...");
  }
  throw bad(detail::str_cat("lists fewer nodes than node ", node, " (SLURM_NODEID)"));
}

namespace {
// This node's task count from Slurm's variables (a step's first), nullopt outside Slurm.
std::optional<int> slurm_local_size(const EnvLookup& env) {
  if (auto n = env_int(env, "SLURM_NTASKS_PER_NODE")) return *n;
  for (const char* name : {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"})
    if (const char* tpn = env(name); tpn && *tpn) return slurm_tasks_on_node(tpn, env_int(env, "SLURM_NODEID").value_or(0));
  return std::nullopt;
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
    // srun --mpi=pmix: the size is Slurm's (PMIx exports none); with none at all, at least rank + 1.
    const auto size = first_of(env, {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"});
    l.local_rank = first_of(env, {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}).value_or(0);
    // srun --mpi=pmix sets no local size of MPI's: this node's count of Slurm's tasks.
    const auto mpi_local_size = first_of(env, {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"});
    l.local_size = mpi_local_size ? *mpi_local_size : slurm_local_size(env).value_or(1);
    l.store_host = master;
    l.store_port = master_port.value_or(kDefaultStorePort);
    l.size = size.value_or(l.rank + 1);
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
    l.local_size = slurm_local_size(env).value_or(1);
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

const char* to_string(Backend b) {
  switch (b) {
    case Backend::Auto: return "auto";
    case Backend::Mpi: return "mpi";
    case Backend::C10d: return "c10d";
    case Backend::Local: return "local";
    case Backend::Nccl: return "nccl";
  }
  return "?";
}

Backend backend_from_string(const std::string& name) {
  return enum_from_string(name, {Backend::Auto, Backend::Mpi, Backend::C10d, Backend::Local, Backend::Nccl}, "backend");
}

Backend resolve_backend(Backend requested, const LaunchInfo& l) {
  switch (requested) {
    case Backend::Auto:
      if (l.launcher == "mpirun") return Backend::Mpi;
      return l.size > 1 || l.launcher != "single process" ? Backend::C10d : Backend::Local;
    case Backend::Local:
      if (l.size > 1)
        throw InvalidArgument(detail::str_cat("backend local is a one-process world, but ", l.launcher, " started ",
                                              l.size, " ranks"));
      return requested;
    case Backend::Mpi:
      if (l.launcher != "mpirun" && l.size > 1)
        throw InvalidArgument(detail::str_cat("backend mpi needs an MPI launcher (mpirun, srun with PMI), but ",
                                              l.launcher, " started these ", l.size, " ranks; use --backend c10d"));
      return requested;
    case Backend::Nccl:
      resolve_backend(Backend::Auto, l);  // the bootstrap's own checks
      return requested;
    case Backend::C10d:
      if (l.size > 1 && l.store_host.empty())
        throw InvalidArgument(detail::str_cat("backend c10d with ", l.size, " ranks (", l.launcher,
                                              ") needs MASTER_ADDR (and MASTER_PORT) for its store"));
      return requested;
  }
  throw InvalidArgument("unknown backend");
}

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

const char* getenv_lookup(const char* name) { return std::getenv(name); }

}  // namespace longhaul

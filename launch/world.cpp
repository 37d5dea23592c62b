#include "launch/world.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "longhaul/config.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/errors.h"
#if LONGHAUL_WITH_MPI
#include "runtime/comm/mpi/communicator.h"
#endif

namespace longhaul {
namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}
bool mpi_launch() {
#if LONGHAUL_WITH_MPI
  return launched_by_mpi();
#else
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
#endif
}
}  // namespace

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

World::World(CommPtr comm, std::string launcher, int local_rank, int local_size, int threads,
             std::string thread_reason)
    : comm_(std::move(comm)),
      launcher_(std::move(launcher)),
      local_rank_(local_rank),
      local_size_(local_size),
      threads_(threads),
      thread_reason_(std::move(thread_reason)) {}

World::~World() {
#if LONGHAUL_WITH_MPI
  if (comm_ && comm_->backend() == "mpi") {
    comm_.reset();
    shutdown_mpi();
  }
#endif
}

std::string World::config_line() const {
  return detail::str_cat("longhaul ", LONGHAUL_VERSION, ": rank ", rank(), "/", size(), " (local ", local_rank_, "/",
                         local_size_, "), launcher ", launcher_, ", backend ", comm_->backend(), ", threads ",
                         threads_, " (", thread_reason_, "), comm timeout ", comm_->timeout().count() / 1000.0,
                         " s, torch ", LONGHAUL_TORCH_VERSION, ", cuda ", LONGHAUL_WITH_CUDA ? "built" : "not built");
}

World init(const InitOptions& options) {
  CommOptions comm_options;
  comm_options.timeout = options.timeout;
  const bool under_mpi = mpi_launch();
  std::string backend = options.backend;
  if (backend == "auto") backend = under_mpi ? "mpi" : "local";
  CommPtr comm;
  std::string launcher = under_mpi ? "mpirun" : "single process";
  if (backend == "mpi") {
#if LONGHAUL_WITH_MPI
    comm = create_mpi_world(comm_options);
#else
    throw Unsupported("backend mpi requested (or launched by mpirun) but this build of longhaul has no MPI; "
                      "configure with LONGHAUL_WITH_MPI=ON");
#endif
  } else if (backend == "local") {
    if (under_mpi && env_int("OMPI_COMM_WORLD_SIZE", 1) > 1)
      throw InvalidArgument("backend local is a one-process world, but mpirun started several ranks");
    comm = create_local_world(1, comm_options)[0];
  } else {
    throw InvalidArgument("unknown backend '" + backend + "', expected auto, mpi or local");
  }

  const int local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", env_int("MPI_LOCALRANKID", 0));
  const int local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("MPI_LOCALNRANKS", 1));
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
  World world(comm, launcher, local_rank, local_size, threads, reason);
  if (options.log_config && world.rank() == 0) std::cerr << world.config_line() << std::endl;
  return world;
}

}  // namespace longhaul

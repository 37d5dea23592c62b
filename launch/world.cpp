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
#include <memory>
#include <mutex>
#include <optional>

#include "longhaul/config.h"
#include "launch/placement.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/comm/checked/communicator.h"
#include "runtime/comm/nccl_order/communicator.h"
#include "runtime/comm/routed/communicator.h"
#include "core/vector_math_warmup.h"
#if LONGHAUL_WITH_NCCL
#include "runtime/comm/nccl/communicator.h"
#endif
#include "core/errors.h"
#if LONGHAUL_WITH_MPI
#include "runtime/comm/mpi/communicator.h"
#endif
#if LONGHAUL_WITH_C10D
#include "runtime/comm/c10d/communicator.h"
#endif

namespace longhaul {

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
  // The communicators go first: an MPI one frees its handle on the engine, which must still run.
  comm_.reset();
  host_comm_.reset();
  mpi_session_.reset();
}

namespace {
#if LONGHAUL_WITH_MPI
// One token per process while any World uses MPI; the last World's release finalises MPI. So a
// second init() (or a copy's destruction) does not end MPI under the first World.
struct MpiSession {
  ~MpiSession() { mpi::shutdown(); }
};

std::shared_ptr<void> mpi_session() {
  static std::mutex mu;
  static std::weak_ptr<MpiSession> current;
  std::lock_guard<std::mutex> lock(mu);
  std::shared_ptr<MpiSession> s = current.lock();
  if (!s) {
    s = std::make_shared<MpiSession>();
    current = s;
  }
  return s;
}
#endif
}  // namespace

std::string World::config_line() const {
  return detail::str_cat("longhaul ", LONGHAUL_VERSION, ": rank ", rank(), "/", size(), " (local ", local_rank_, "/",
                         local_size_, "), launcher ", launcher_, ", backend ", comm_->backend(), ", threads ",
                         threads_, " (", thread_reason_, "), comm timeout ", comm_->timeout().count() / 1000.0,
                         " s, torch ", LONGHAUL_TORCH_VERSION, ", cuda ", LONGHAUL_WITH_CUDA ? "built" : "not built",
                         device_ >= 0 ? detail::str_cat(", device cuda:", device_) : std::string(),
                         nccl_note_.empty() ? std::string() : detail::str_cat(", nccl ", nccl_note_),
                         checks_.empty() ? std::string() : detail::str_cat(", checks ", checks_));
}

World init(const InitOptions& options) {
  warm_up_vector_math();  // before any of torch's threads run a unary op (core/vector_math_warmup.h)
  LH_CHECK(options.threads >= 0, "init: threads must be >= 0 (0: as many as this rank's CPUs), got ", options.threads);
  CommOptions comm_options;
  comm_options.timeout = checked_timeout(options.timeout, "init: InitOptions::timeout");
  const LaunchInfo launch = detect_launch(getenv_lookup);
  const Backend resolved = resolve_backend(options.backend, launch);
  const Backend backend = resolved == Backend::Nccl ? resolve_backend(Backend::Auto, launch) : resolved;

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
  if (backend == Backend::Mpi) {
#if LONGHAUL_WITH_MPI
    comm = mpi::create_world(comm_options);
#else
    throw Unsupported("backend mpi requested (or launched by mpirun) but this build of longhaul has no MPI; "
                      "configure with LONGHAUL_WITH_MPI=ON, or use --backend c10d with MASTER_ADDR/MASTER_PORT");
#endif
  } else if (backend == Backend::C10d) {
#if LONGHAUL_WITH_C10D
    // One rank without a store address serves itself on the loopback, on any free port.
    const bool alone = launch.size == 1 && launch.store_host.empty();
    c10d_backend::TcpStoreOptions store;
    store.rank0_serves = !launch.agent_store;
    if (launch.agent_store) store.prefix = detail::str_cat("longhaul/attempt", launch.restart);
    comm = c10d_backend::create_world_tcp(alone ? "127.0.0.1" : launch.store_host, alone ? 0 : launch.store_port,
                                          launch.rank, launch.size, comm_options, store);
#else
    throw Unsupported("backend c10d requested (or launched by torchrun/Slurm) but this build of longhaul has no "
                      "c10d; configure with LONGHAUL_WITH_C10D=ON");
#endif
  } else {
    comm = local::create_world(1, comm_options)[0];
  }
  if (comm->size() != launch.size && launch.launcher != "single process")
    throw CommError(detail::str_cat("backend ", comm->backend(), " built a world of ", comm->size(), " ranks but ",
                                    launch.launcher, " says ", launch.size));

  // NCCL for CUDA tensors where every rank has a GPU of its own: decided from every rank's GPU
  // UUID (gathered only where it can matter), so all ranks decide alike whatever each one sees.
  std::string my_gpu;
#if LONGHAUL_WITH_NCCL
  if (device >= 0) {
    try {
      my_gpu = nccl::gpu_uuid(device);
    } catch (const std::exception& e) {
      // Still takes part in the gather (the others would wait out their deadline): as no GPU.
      std::cerr << "longhaul: rank " << launch.rank << ": cuda:" << device << " gives no UUID (" << e.what()
                << "); counted as no CUDA device" << std::endl;
    }
  }
#endif
  const std::vector<RankPlace> places =
      needs_gpu_census(options.backend, LONGHAUL_WITH_NCCL, comm->size())
          ? gather_placement(*comm, launch.local_rank, launch.local_size, my_gpu)
          : std::vector<RankPlace>{RankPlace{"", launch.local_rank, launch.local_size, my_gpu}};
  // What was asked (auto or nccl), not what it resolved to: auto adds NCCL on GPU ranks.
  const NcclChoice nccl_choice = choose_nccl(options.backend, LONGHAUL_WITH_NCCL, places);
  CommPtr host;
#if LONGHAUL_WITH_NCCL
  if (nccl_choice.use) {
    nccl::Options nccl_options;
    nccl_options.device = device;
    nccl_options.comm = comm_options;
    host = comm;
    comm = routed::wrap(host, nccl::create_world(*host, nccl_options));
  }
#endif
  std::string checks;
  if (options.nccl_order || nccl_order::requested_by_env()) {
    comm = nccl_order::wrap(comm);
    checks = "nccl order";
  }
  if (options.check_collectives || checked::requested_by_env()) {
    comm = checked::wrap(comm);
    checks += checks.empty() ? "collectives" : ", collectives";
  }
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
#if LONGHAUL_WITH_MPI
  if (backend == Backend::Mpi) world.mpi_session_ = mpi_session();
#endif
  if (host) world.set_host_comm(host);
  world.set_nccl_note(detail::str_cat(nccl_choice.use ? "on" : "off", " (", nccl_choice.why, ")"));
  world.set_gpu(my_gpu);
  world.set_checks(checks);
  if (options.log_config && world.rank() == 0) std::cerr << world.config_line() << std::endl;
  return world;
}

}  // namespace longhaul

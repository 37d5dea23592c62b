// longhaul::init: detects how the process was launched (mpirun, torchrun, Slurm or a single
// process), builds the world communicator, picks the GPU by local rank, sets thread counts from
// the CPU affinity and logs one config line.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "runtime/comm/comm.h"

namespace longhaul {

struct InitOptions {
  // The host backend (CPU tensors): auto picks mpi under mpirun, c10d (Gloo) under torchrun or
  // Slurm, local for one process; mpi | c10d | local force one (local: a one-rank world without
  // MPI). CUDA tensors: with auto, when this build has NCCL and every local rank has its own GPU
  // (see uses_nccl), World::comm() routes them over NCCL, bootstrapped over the host backend;
  // nccl forces that (an error without a GPU). World::host_comm() is the host backend alone.
  std::string backend = "auto";
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  int threads = 0;               // 0: from the CPU affinity and the ranks sharing it
  bool log_config = true;        // the start-up line on rank 0 (stderr)
  // World::comm() under NCCL's matching and stream order (CommOptions::nccl_order), to prove on
  // the CPU that a schedule is NCCL-safe; also on when LONGHAUL_NCCL_ORDER=1.
  bool nccl_order = false;
};

class World {
 public:
  World(CommPtr comm, std::string launcher, int local_rank, int local_size, int threads, std::string thread_reason,
        int device = -1);
  ~World();  // finalises MPI if this World started it
  World(World&&) = default;
  World& operator=(World&&) = default;

  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const CommPtr& comm() const { return comm_; }
  // The same ranks for CPU tensors only: the host backend under comm()'s routing, or comm().
  const CommPtr& host_comm() const { return host_comm_ ? host_comm_ : comm_; }
  void set_host_comm(CommPtr c) { host_comm_ = std::move(c); }
  const std::string& launcher() const { return launcher_; }
  int threads() const { return threads_; }
  // The CUDA device of this rank (local_rank % visible devices), -1 without CUDA.
  int device() const { return device_; }
  std::string config_line() const;

 private:
  CommPtr comm_, host_comm_;
  std::string launcher_;
  int local_rank_, local_size_, threads_;
  std::string thread_reason_;
  int device_ = -1;
};

World init(const InitOptions& options = {});

// How this process was started, from its environment:
//  - mpirun/srun with PMI: OMPI_COMM_WORLD_*, PMI_*, PMIX_RANK, MPI_LOCAL*;
//  - torchrun (or RANK/WORLD_SIZE set by hand): RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
//    MASTER_ADDR, MASTER_PORT (TORCHELASTIC_* tell torchrun apart);
//  - Slurm without MPI: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE or
//    SLURM_TASKS_PER_NODE; the store host is MASTER_ADDR or the first host of
//    SLURM_STEP_NODELIST / SLURM_NODELIST, the port MASTER_PORT or kSlurmBasePort + job id % 10000.
// Throws InvalidArgument for malformed or contradictory settings.
struct LaunchInfo {
  std::string launcher = "single process";  // mpirun | torchrun | env | slurm | single process
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
  std::string store_host;  // the c10d store (rank 0 serves it); empty when not known
  int store_port = 0;
  bool agent_store = false;  // torchrun's agent serves the store (TORCHELASTIC_USE_AGENT_STORE)
  int restart = 0;           // TORCHELASTIC_RESTART_COUNT: keeps a restarted attempt's keys apart
};
constexpr int kDefaultStorePort = 29500;  // torchrun's default MASTER_PORT
constexpr int kSlurmBasePort = 20000;
using EnvLookup = std::function<const char*(const char*)>;
LaunchInfo detect_launch(const EnvLookup& env);
// The backend `requested` (auto | mpi | c10d | local) means for this launch; InvalidArgument when
// it contradicts the launch (e.g. local with several ranks, mpi without an MPI launcher).
std::string resolve_backend(const std::string& requested, const LaunchInfo& launch);
// Whether init gives CUDA tensors an NCCL transport: `requested` nccl always; auto when the build
// has NCCL, the world has several ranks and each local rank has its own GPU (NCCL refuses two
// ranks on one GPU; a one-rank world's host backend moves CUDA tensors itself when it is local).
bool uses_nccl(const std::string& requested, const LaunchInfo& launch, int visible_devices, bool nccl_built);
// The first host of a Slurm node list: "gpu[003-005,9],cpu1" -> "gpu003".
std::string first_slurm_host(const std::string& nodelist);

// CPUs in this process's affinity mask.
int affinity_cpus();

}  // namespace longhaul

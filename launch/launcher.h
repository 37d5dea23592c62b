// Launcher detection: how this process was started (mpirun, torchrun, Slurm, one process), read
// from its environment, and what that means for the backend. Pure functions of the environment
// (tested with fake lookups); longhaul::init (world.h) builds the world from them.
#pragma once

#include <functional>
#include <string>

namespace longhaul {

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
// The world's backend: Auto picks by launcher; Nccl is the Auto host backend plus NCCL for CUDA tensors.
enum class Backend { Auto, Mpi, C10d, Local, Nccl };
const char* to_string(Backend b);  // auto, mpi, c10d, local, nccl
Backend backend_from_string(const std::string& name);  // InvalidArgument naming the choices

// The backend `requested` means for this launch; InvalidArgument when it contradicts the launch
// (e.g. local with several ranks, mpi without an MPI launcher).
Backend resolve_backend(Backend requested, const LaunchInfo& launch);
// The first host of a Slurm node list: "gpu[003-005,9],cpu1" -> "gpu003".
std::string first_slurm_host(const std::string& nodelist);
// Node `node`'s count in Slurm's tasks per node: "2(x3),1" -> 2 for nodes 0-2, 1 for node 3.
int slurm_tasks_on_node(const std::string& tasks_per_node, int node);

// CPUs in this process's affinity mask.
int affinity_cpus();

// The process environment, for detect_launch.
const char* getenv_lookup(const char* name);

}  // namespace longhaul

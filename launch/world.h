// longhaul::init: detects how the process was launched (mpirun, torchrun, Slurm or a single
// process), builds the world communicator, picks the GPU by local rank, sets thread counts from
// the CPU affinity and logs one config line.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "launch/launcher.h"
#include "core/errors.h"
#include "runtime/comm/comm.h"

namespace longhaul {

struct InitOptions {
  // The host backend (CPU tensors): auto picks mpi under mpirun, c10d (Gloo) under torchrun or
  // Slurm, local for one process; mpi | c10d | local force one (local: a one-rank world without
  // MPI). CUDA tensors: with auto, when this build has NCCL and every rank has a GPU of its own
  // (every rank's GPU UUID is gathered: see choose_nccl), World::comm() routes them over NCCL,
  // bootstrapped over the host backend; nccl forces that (an error naming the rank without a GPU,
  // or the two ranks on one). World::host_comm() is the host backend alone.
  Backend backend = Backend::Auto;
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  int threads = 0;               // 0: from the CPU affinity and the ranks sharing it
  bool log_config = true;        // the start-up line on rank 0 (stderr)
  // World::comm() under NCCL's matching and stream order (CommOptions::nccl_order), to prove on
  // the CPU that a schedule is NCCL-safe; also on when LONGHAUL_NCCL_ORDER=1.
  bool nccl_order = false;
  // Every collective of World::comm() first compares what each rank calls
  // (CommOptions::check_collectives); also on when LONGHAUL_CHECK_COLLECTIVES=1.
  bool check_collectives = false;
};

class World {
 public:
  World(CommPtr comm, std::string launcher, int local_rank, int local_size, int threads, std::string thread_reason,
        int device = -1);
  ~World();  // the last World on MPI finalises it (MPI starts once per process: no init() after that)
  World(World&&) = default;
  World& operator=(World&&) = default;

  int rank() const { return live().rank(); }
  int size() const { return live().size(); }
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
  // Whether CUDA tensors go over NCCL and why ("on (every rank has a GPU of its own)").
  const std::string& nccl_note() const { return nccl_note_; }
  void set_nccl_note(std::string note) { nccl_note_ = std::move(note); }
  // The UUID of this rank's GPU ("GPU-…"), empty without one (or in a build without NCCL).
  const std::string& gpu() const { return gpu_; }
  void set_gpu(std::string uuid) { gpu_ = std::move(uuid); }
  // The checking modes comm() runs under ("nccl order, collectives"), empty for none.
  const std::string& checks() const { return checks_; }
  void set_checks(std::string checks) { checks_ = std::move(checks); }

 private:
  CommPtr comm_, host_comm_;
  std::string launcher_;
  int local_rank_, local_size_, threads_;
  std::string thread_reason_;
  int device_ = -1;
  std::string nccl_note_, gpu_, checks_;
  // Shared by every World on MPI: MPI is finalised when the last of them is destroyed.
  std::shared_ptr<void> mpi_session_;
  friend World init(const InitOptions& options);
  Communicator& live() const {
    LH_CHECK(comm_ != nullptr, "World: used after it was moved from");
    return *comm_;
  }
};

World init(const InitOptions& options = {});

}  // namespace longhaul

// longhaul::init: detects how the process was launched (mpirun or a single process for now),
// builds the world communicator, sets thread counts from the CPU affinity and logs one config line.
#pragma once

#include <chrono>
#include <string>

#include "runtime/comm/comm.h"

namespace longhaul {

struct InitOptions {
  std::string backend = "auto";  // auto | mpi | local (a one-rank world without MPI)
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  int threads = 0;               // 0: from the CPU affinity and the ranks sharing it
  bool log_config = true;        // the start-up line on rank 0 (stderr)
};

class World {
 public:
  World(CommPtr comm, std::string launcher, int local_rank, int local_size, int threads, std::string thread_reason);
  ~World();  // finalises MPI if this World started it
  World(World&&) = default;
  World& operator=(World&&) = default;

  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const CommPtr& comm() const { return comm_; }
  const std::string& launcher() const { return launcher_; }
  int threads() const { return threads_; }
  std::string config_line() const;

 private:
  CommPtr comm_;
  std::string launcher_;
  int local_rank_, local_size_, threads_;
  std::string thread_reason_;
};

World init(const InitOptions& options = {});

// CPUs in this process's affinity mask.
int affinity_cpus();

}  // namespace longhaul

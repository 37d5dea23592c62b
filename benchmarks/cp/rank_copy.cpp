#include "benchmarks/cp/rank_copy.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <mutex>

#include "benchmarks/common/timing.h"
#include "core/errors.h"
#include "runtime/comm/local/communicator.h"

namespace longhaul::bench {

RankCopy measure_rank_copy(const c10::Device& device, int64_t bytes, int reps) {
  LH_CHECK(bytes >= 4 && reps >= 1, "measure_rank_copy: needs bytes >= 4 and reps >= 1, got ", bytes, " and ", reps);
  std::mutex mu;
  double small_s = 0, large_s = 0;
  local::run_ranks(2, [&](Communicator& comm) {
    local::enter_device_rank(device);
    const int peer = 1 - comm.rank();
    // Seconds per one-way message: rank 0 sends and waits for the echo, rank 1 echoes.
    auto one_way = [&](int64_t n) {
      at::Tensor t = at::zeros({n / 4}, at::TensorOptions(at::kFloat).device(device));
      double best = 0;
      for (int rep = 0; rep <= reps; ++rep) {
        comm.barrier()->wait();
        Stopwatch watch(device);
        if (comm.rank() == 0) {
          comm.send(t, peer)->wait();
          comm.recv(t, peer)->wait();
        } else {
          comm.recv(t, peer)->wait();
          comm.send(t, peer)->wait();
        }
        const double s = watch.lap() * 1e-3 / 2;
        if (rep > 0) best = rep == 1 ? s : std::min(best, s);  // rep 0 warms up
      }
      return best;
    };
    const double small = one_way(4), large = one_way(bytes);
    if (comm.rank() == 0) {
      std::lock_guard<std::mutex> lock(mu);
      small_s = small, large_s = large;
    }
  });
  return {small_s, double(bytes) / std::max(large_s - small_s, 1e-9)};
}

}  // namespace longhaul::bench

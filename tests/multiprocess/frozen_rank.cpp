// Fault injection: rank 1 stops itself (SIGSTOP) or kills itself (SIGKILL) at step 5 of a loop of
//   ring      bare exchanges around a ring (1 MiB each), or
//   backward  ring-attention steps through ContextParallel::attention; rank 1 stops as its
//             backward starts (a hook on the output's gradient), so the others are waiting
//             inside the strategy's backward exchanges.
// Every rank first writes its process id to PID_DIR/rank<r>, so the test can check that no rank
// outlives the job and clean up only the processes it started.
//   frozen_rank DEADLINE_S stop|kill PID_DIR [ring|backward]
// A survivor that fails with a CommError exits with the tool's code (4, TimeoutError 5) and sets
// it as the job's abort code: mpirun ends with it. Run by frozen_rank.sh.
#include <ATen/ATen.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/errors.h"
#include "parallel/context_parallel.h"
#include "runtime/comm/mpi/communicator.h"

namespace {

constexpr int kFaultStep = 5, kSteps = 20;

void fault(const std::string& mode, const char* where) {
  std::fprintf(stderr, "rank 1: %s %s\n", mode == "kill" ? "SIGKILL" : "SIGSTOP", where);
  std::raise(mode == "kill" ? SIGKILL : SIGSTOP);
}

void ring_steps(longhaul::Communicator& comm, const std::string& mode) {
  const int p = comm.size(), r = comm.rank();
  at::Tensor out = at::full({1 << 18}, float(r)), in = at::empty({1 << 18});  // 1 MiB
  for (int step = 0; step < kSteps; ++step) {
    if (step == kFaultStep && r == 1) fault(mode, "at step 5 of the ring");
    comm.exchange({longhaul::P2POp::send(out, (r + 1) % p), longhaul::P2POp::recv(in, (r + p - 1) % p)})->wait();
  }
}

void backward_steps(const longhaul::CommPtr& comm, const std::string& mode) {
  using namespace longhaul;
  const int64_t T = 3000, H = 4, D = 32;
  ShardPlan plan(T, std::nullopt, Layout::Zigzag, comm->size(), comm->rank());
  ContextParallel cp(comm, {.strategy = Strategy::Ring, .layout = Layout::Zigzag});
  at::manual_seed(comm->rank());
  for (int step = 0; step < kSteps; ++step) {
    at::Tensor q = at::randn({plan.local_rows(), H, D}).set_requires_grad(true);
    at::Tensor k = at::randn({plan.local_rows(), H, D}).set_requires_grad(true);
    at::Tensor v = at::randn({plan.local_rows(), H, D}).set_requires_grad(true);
    at::Tensor out = cp.attention(q, k, v, plan, Mask::causal());
    if (step == kFaultStep && comm->rank() == 1)
      out.register_hook([&mode](const at::Tensor& g) {
        fault(mode, "as its ContextParallel backward starts (step 5)");
        return g;
      });
    out.sum().backward();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const double deadline_s = argc > 1 ? std::atof(argv[1]) : 3.0;
  const std::string mode = argc > 2 ? argv[2] : "stop";
  const std::string pid_dir = argc > 3 ? argv[3] : "";
  const std::string place = argc > 4 ? argv[4] : "ring";
  longhaul::CommOptions options;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000));
  int rc = 0;
  {
    auto comm = longhaul::mpi::create_world(options);
    const int r = comm->rank();
    if (!pid_dir.empty()) std::ofstream(pid_dir + "/rank" + std::to_string(r)) << getpid() << "\n";
    comm->barrier()->wait();  // every id is written before anyone stops
    try {
      if (place == "backward")
        backward_steps(comm, mode);
      else
        ring_steps(*comm, mode);
      std::fprintf(stderr, "rank %d: finished all steps (unexpected)\n", r);
      rc = 3;
    } catch (const longhaul::TimeoutError& e) {
      std::fprintf(stderr, "rank %d: TimeoutError: %s\n", r, e.what());
      rc = 5;
    } catch (const longhaul::CommError& e) {
      std::fprintf(stderr, "rank %d: CommError: %s\n", r, e.what());
      rc = 4;
    }
  }
  longhaul::mpi::set_abort_code(rc);
  longhaul::mpi::shutdown();  // aborts the job with rc when operations were left incomplete
  return rc;
}

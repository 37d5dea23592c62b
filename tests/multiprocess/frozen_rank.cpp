// Fault injection: ranks exchange around a ring; rank 1 stops itself (SIGSTOP) or kills itself
// (SIGKILL) at step 5. Every rank first writes its process id to PID_DIR/rank<r>, so the test
// can check that no rank outlives the job and clean up only the processes it started.
//   frozen_rank DEADLINE_S stop|kill PID_DIR
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
#include "runtime/comm/mpi/communicator.h"

int main(int argc, char** argv) {
  const double deadline_s = argc > 1 ? std::atof(argv[1]) : 3.0;
  const std::string mode = argc > 2 ? argv[2] : "stop";
  const std::string pid_dir = argc > 3 ? argv[3] : "";
  longhaul::CommOptions options;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000));
  int rc = 0;
  {
    auto comm = longhaul::mpi::create_world(options);
    const int p = comm->size(), r = comm->rank();
    if (!pid_dir.empty()) std::ofstream(pid_dir + "/rank" + std::to_string(r)) << getpid() << "\n";
    comm->barrier()->wait();  // every id is written before anyone stops
    at::Tensor out = at::full({1 << 18}, float(r)), in = at::empty({1 << 18});  // 1 MiB
    try {
      for (int step = 0; step < 20; ++step) {
        if (step == 5 && r == 1) {
          std::fprintf(stderr, "rank 1: %s at step 5\n", mode == "kill" ? "SIGKILL" : "SIGSTOP");
          std::raise(mode == "kill" ? SIGKILL : SIGSTOP);
        }
        comm->exchange({longhaul::P2POp::send(out, (r + 1) % p), longhaul::P2POp::recv(in, (r + p - 1) % p)})->wait();
      }
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

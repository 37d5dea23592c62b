// Fault injection: ranks exchange around a ring; rank 1 stops itself (SIGSTOP) in the middle.
// The others must fail with a deadline error naming the operation, the peer and the elapsed
// time, and the job must end (non-zero) instead of hanging. Run by frozen_rank.sh.
#include <ATen/ATen.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/comm/mpi/communicator.h"
#include "core/errors.h"

int main(int argc, char** argv) {
  const double deadline_s = argc > 1 ? std::atof(argv[1]) : 3.0;
  longhaul::CommOptions options;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000));
  int rc = 0;
  {
    auto comm = longhaul::mpi::create_world(options);
    const int p = comm->size(), r = comm->rank();
    at::Tensor out = at::full({1 << 18}, float(r)), in = at::empty({1 << 18});  // 1 MiB
    try {
      for (int step = 0; step < 20; ++step) {
        if (step == 5 && r == 1) {
          std::fprintf(stderr, "rank 1: stopping itself with SIGSTOP at step 5\n");
          std::raise(SIGSTOP);
        }
        comm->exchange({longhaul::P2POp::send(out, (r + 1) % p), longhaul::P2POp::recv(in, (r + p - 1) % p)})->wait();
      }
      std::fprintf(stderr, "rank %d: finished all steps (unexpected)\n", r);
    } catch (const longhaul::CommError& e) {
      std::fprintf(stderr, "rank %d: error: %s\n", r, e.what());
      rc = 1;
    }
  }
  longhaul::mpi::shutdown();  // aborts the job when operations were left incomplete
  return rc;
}

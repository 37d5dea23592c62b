// The world communicator under mpirun -np 1..4 (mpi backend, shared memory and TCP) and under
// torchrun (c10d backend, Gloo): every Communicator operation, errors, deadlines, and the process
// mesh. Each test ends by all-reducing its pass flag, so one failing rank fails the test everywhere
// and later tests stay in step.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "runtime/comm/mpi/communicator.h"
#include "core/errors.h"
#include "runtime/mesh.h"
#include "tests/common/collectives.h"
#include "tests/multiprocess/mpi_fixture.h"

namespace longhaul {
namespace {

class Mpi : public MpiTest {};

TEST_F(Mpi, PointToPoint) { testing::check_point_to_point(comm()); }
TEST_F(Mpi, Exchange) { testing::check_exchange(comm()); }
TEST_F(Mpi, AllToAll) { testing::check_all_to_all(comm()); }
TEST_F(Mpi, AllGather) { testing::check_all_gather(comm()); }
TEST_F(Mpi, ReduceScatter) { testing::check_reduce_scatter(comm()); }
TEST_F(Mpi, AllReduce) { testing::check_all_reduce(comm()); }
TEST_F(Mpi, LowPrecisionSums) { testing::check_low_precision_sums(comm()); }
TEST_F(Mpi, BroadcastAndBarrier) { testing::check_broadcast_and_barrier(comm()); }
TEST_F(Mpi, Split) { testing::check_split(comm()); }
TEST_F(Mpi, ZeroSize) { testing::check_zero_size(comm()); }
TEST_F(Mpi, ArgumentErrors) { testing::check_argument_errors(comm()); }
TEST_F(Mpi, SizeMismatch) { testing::check_size_mismatch(comm()); }
TEST_F(Mpi, CollectiveCountMismatch) { testing::check_collective_count_mismatch(comm()); }
TEST_F(Mpi, Timeout) { testing::check_timeout(comm()); }

TEST_F(Mpi, RejectsCudaTensorsByName) {
  // Device checks happen before any transfer; a meta tensor stands in for a non-CPU device.
  at::Tensor t = at::empty({4}, at::TensorOptions().device(at::kMeta));
  try {
    comm().send(t, 0);
    ADD_FAILURE() << "a meta tensor was accepted";
  } catch (const Unsupported& e) {
    const std::string want = "backend " + comm().backend() + " does not support send on";
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

// Transfers advance while the caller computes: a message posted before a long computation is
// complete when the computation ends (the progress engine, not wait(), moved it).
TEST_F(Mpi, ProgressWhileComputing) {
  const int p = comm().size(), r = comm().rank();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks to have a peer (mpi_comm_np2..4 and torchrun_comm_np2/4 run it)";
  const int64_t n = int64_t(8) << 20;  // 32 MiB: above every eager limit, so a rendezvous
  at::Tensor out = at::full({n}, float(r)), in = at::empty({n});
  comm().barrier()->wait();
  auto w = comm().exchange({P2POp::send(out, (r + 1) % p), P2POp::recv(in, (r + p - 1) % p)});
  bool done = false;
  auto start = Clock::now();
  while (!done && Clock::now() - start < std::chrono::seconds(10)) {
    at::mm(at::rand({128, 128}), at::rand({128, 128}));  // compute, never calling into MPI
    done = w->done();
  }
  EXPECT_TRUE(done) << "the exchange did not progress during computation";
  w->wait();
  EXPECT_TRUE(at::equal(in, at::full({n}, float((r + p - 1) % p))));
}

TEST_F(Mpi, ProcessMeshGroups) {
  const int p = comm().size();
  for (int cp = 1; cp <= p; ++cp) {
    if (p % cp) continue;
    ProcessMesh mesh(g_mpi_world, {.cp = cp});
    EXPECT_EQ(mesh.cp()->size(), cp);
    EXPECT_EQ(mesh.dp()->size(), p / cp);
    EXPECT_EQ(mesh.cp()->rank(), comm().rank() % cp);
    at::Tensor t = at::ones({1});
    mesh.cp()->all_reduce(t)->wait();
    EXPECT_EQ(t.item<float>(), float(cp));
  }
}

}  // namespace
}  // namespace longhaul

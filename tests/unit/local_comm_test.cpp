// The local backend with 1–8 thread-ranks: every Communicator operation, errors and deadlines.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "runtime/comm/local/communicator.h"
#include "runtime/comm/routed/communicator.h"
#include "core/errors.h"
#include "tests/common/collectives.h"

namespace longhaul {
namespace {

using CheckFn = void (*)(Communicator&);

class LocalRanks : public ::testing::TestWithParam<int> {
 protected:
  // Runs check on every thread-rank; a failure on any rank fails the test on all.
  void run(CheckFn check) {
    CommOptions o;
    o.timeout = std::chrono::seconds(20);
    local::run_ranks(GetParam(), [&](Communicator& comm) {
      check(comm);
      EXPECT_TRUE(testing::all_ranks_pass(comm, !::testing::Test::HasFailure()));
    }, o);
  }
};

// The same checks through the routed communicator init hands out on GPU ranks (CPU tensors go to
// its host backend, here local); its CUDA side runs in the gpu suite (NcclComm.InitWithBackendNccl).
class RoutedRanks : public ::testing::TestWithParam<int> {
 protected:
  void run(CheckFn check) {
    CommOptions o;
    o.timeout = std::chrono::seconds(20);
    local::run_ranks(GetParam(), [&](Communicator& local) {
      CommPtr routed = routed::wrap(local.shared_from_this(), nullptr);
      check(*routed);
      EXPECT_TRUE(testing::all_ranks_pass(local, !::testing::Test::HasFailure()));
    }, o);
  }
};

TEST_P(LocalRanks, PointToPoint) { run(testing::check_point_to_point); }
TEST_P(LocalRanks, Exchange) { run(testing::check_exchange); }
TEST_P(LocalRanks, AllToAll) { run(testing::check_all_to_all); }
TEST_P(LocalRanks, AllGather) { run(testing::check_all_gather); }
TEST_P(LocalRanks, ReduceScatter) { run(testing::check_reduce_scatter); }
TEST_P(LocalRanks, AllReduce) { run(testing::check_all_reduce); }
TEST_P(LocalRanks, LowPrecisionSums) { run(testing::check_low_precision_sums); }
TEST_P(LocalRanks, BroadcastAndBarrier) { run(testing::check_broadcast_and_barrier); }
TEST_P(LocalRanks, Split) { run(testing::check_split); }
TEST_P(LocalRanks, ZeroSize) { run(testing::check_zero_size); }
TEST_P(LocalRanks, ArgumentErrors) { run(testing::check_argument_errors); }
TEST_P(LocalRanks, SizeMismatch) { run(testing::check_size_mismatch); }
TEST_P(LocalRanks, CollectiveCountMismatch) { run(testing::check_collective_count_mismatch); }
TEST_P(LocalRanks, Timeout) { run(testing::check_timeout); }

INSTANTIATE_TEST_SUITE_P(Ranks, LocalRanks, ::testing::Values(1, 2, 3, 4, 5, 8),
                         [](const auto& info) { return "P" + std::to_string(info.param); });

TEST_P(RoutedRanks, PointToPoint) { run(testing::check_point_to_point); }
TEST_P(RoutedRanks, Exchange) { run(testing::check_exchange); }
TEST_P(RoutedRanks, AllToAll) { run(testing::check_all_to_all); }
TEST_P(RoutedRanks, AllGather) { run(testing::check_all_gather); }
TEST_P(RoutedRanks, ReduceScatter) { run(testing::check_reduce_scatter); }
TEST_P(RoutedRanks, AllReduce) { run(testing::check_all_reduce); }
TEST_P(RoutedRanks, LowPrecisionSums) { run(testing::check_low_precision_sums); }
TEST_P(RoutedRanks, BroadcastAndBarrier) { run(testing::check_broadcast_and_barrier); }
TEST_P(RoutedRanks, Split) { run(testing::check_split); }
TEST_P(RoutedRanks, ArgumentErrors) { run(testing::check_argument_errors); }
TEST_P(RoutedRanks, Timeout) { run(testing::check_timeout); }

INSTANTIATE_TEST_SUITE_P(Ranks, RoutedRanks, ::testing::Values(1, 3),
                         [](const auto& info) { return "P" + std::to_string(info.param); });

// A device neither backend moves is refused by name; backends over different ranks are refused.
TEST(RoutedComm, RefusesUnroutableDevicesAndMismatchedBackends) {
  auto world = local::create_world(2);
  CommPtr routed = routed::wrap(world[0], nullptr);
  EXPECT_EQ(routed->backend(), "local");
  at::Tensor meta = at::empty({4}, at::TensorOptions().device(at::kMeta));
  try {
    routed->all_reduce(meta);
    ADD_FAILURE() << "a meta tensor was accepted";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("META tensors"), std::string::npos) << e.what();
  }
  auto three = local::create_world(3);
  try {
    routed::wrap(world[0], three[0]);
    ADD_FAILURE() << "backends of 2 and 3 ranks were paired";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("same ranks"), std::string::npos) << e.what();
  }
  EXPECT_EQ(routed::wrap(world[1], world[1])->backend(), "local+local");
}

// The local backend copies on send: changing the buffer after send() returns cannot change what
// the receiver gets (a backend that kept a reference would hide a caller's violation of the rule).
TEST(LocalBackend, CopiesOnSend) {
  local::run_ranks(2, [](Communicator& comm) {
    if (comm.rank() == 0) {
      at::Tensor buf = at::full({1000}, 1.0);
      auto w = comm.send(buf, 1);
      buf.fill_(2.0);
      w->wait();
      comm.barrier()->wait();
    } else {
      comm.barrier()->wait();  // the receive is posted after the sender changed its buffer
      at::Tensor in = at::empty({1000});
      comm.recv(in, 0)->wait();
      EXPECT_TRUE(at::equal(in, at::full({1000}, 1.0)));
    }
  });
}

// A rank that throws does not leave the others blocked: their waits fail at once naming it (not
// at their deadline), and local::run_ranks rethrows its error, the cause, not a peer's.
TEST(LocalBackend, FailingRankEndsThePeersAtOnceAndIsTheErrorRethrown) {
  CommOptions o;
  o.timeout = std::chrono::seconds(20);
  std::mutex mu;
  std::vector<std::string> peers_saw;
  const auto start = Clock::now();
  try {
    local::run_ranks(3, [&](Communicator& comm) {
      if (comm.rank() == 1) throw InvalidArgument("rank 1 gives up");
      try {
        comm.barrier()->wait();
      } catch (const CommError& e) {
        std::lock_guard<std::mutex> lock(mu);
        peers_saw.push_back(e.what());
        throw;
      }
    }, o);
    ADD_FAILURE() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 gives up"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5.0);
  ASSERT_EQ(peers_saw.size(), 2u);
  for (const auto& m : peers_saw) {
    EXPECT_EQ(m.find("did not complete"), std::string::npos) << "a deadline, not the cause: " << m;
    EXPECT_NE(m.find("rank 1 of the local world ended with an error: rank 1 gives up"), std::string::npos) << m;
  }
}

// A message that arrives after its receive's deadline stays for the next receive; it is not
// written into the buffer whose wait already failed.
TEST(LocalBackend, AMessageAfterTheDeadlineGoesToTheNextReceive) {
  CommOptions o;
  o.timeout = std::chrono::milliseconds(200);
  local::run_ranks(2, [](Communicator& comm) {
    if (comm.rank() == 1) {
      at::Tensor abandoned = at::zeros({4});
      EXPECT_THROW(comm.recv(abandoned, 0, 5)->wait(), TimeoutError);
      comm.send(at::ones({1}), 0, 6)->wait();  // now rank 0 sends the late message
      comm.set_timeout(std::chrono::seconds(20));
      at::Tensor next = at::zeros({4});
      comm.recv(next, 0, 5)->wait();
      EXPECT_TRUE(at::equal(next, at::full({4}, 7.0f)));
      EXPECT_TRUE(at::equal(abandoned, at::zeros({4}))) << "written after its wait gave up";
    } else {
      comm.set_timeout(std::chrono::seconds(20));
      at::Tensor go = at::zeros({1});
      comm.recv(go, 1, 6)->wait();
      comm.send(at::full({4}, 7.0f), 1, 5)->wait();
    }
  }, o);
}

// Deadlines: 0 or negative is a named error; "no deadline" (milliseconds::max(), or any past
// about 3 years) is capped, so now + deadline cannot overflow into an instant timeout.
TEST(LocalBackend, DeadlinesAreCheckedAndCapped) {
  for (const auto bad : {std::chrono::milliseconds(0), std::chrono::milliseconds(-5)}) {
    CommOptions o;
    o.timeout = bad;
    try {
      local::create_world(2, o);
      ADD_FAILURE() << bad.count() << " ms accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("expected one > 0"), std::string::npos) << e.what();
    }
  }
  CommOptions forever;
  forever.timeout = std::chrono::milliseconds::max();
  local::run_ranks(2, [](Communicator& comm) {
    EXPECT_EQ(comm.timeout(), kLongestTimeout);
    comm.barrier()->wait();  // completes; it did time out at once before the cap
    EXPECT_THROW(comm.set_timeout(std::chrono::milliseconds(0)), InvalidArgument);
  }, forever);
  EXPECT_EQ(timeout_of_seconds(1e-9, "t"), std::chrono::milliseconds(1));
  EXPECT_EQ(timeout_of_seconds(1e300, "t"), kLongestTimeout);
}

TEST(LocalBackend, RejectsBadWorldSize) { EXPECT_THROW(local::create_world(0), InvalidArgument); }

TEST(LocalBackend, ThreadRanksRunSingleThreaded) {
  const int before = at::get_num_threads();
  local::run_ranks(2, [](Communicator&) { EXPECT_EQ(at::get_num_threads(), 1); });
  EXPECT_EQ(at::get_num_threads(), before);
}

}  // namespace
}  // namespace longhaul

// NCCL-order mode (runtime/comm/nccl_order): every Communicator operation still works under it,
// and the checker itself fails where real NCCL would: crossed posting orders (both ranks name
// both operations) and a receive posted ahead of the send it depends on (a deadline naming it).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <mutex>

#include "runtime/comm/local/communicator.h"
#include "runtime/comm/nccl_order/communicator.h"
#include "runtime/comm/routed/communicator.h"
#include "core/errors.h"
#include "tests/common/collectives.h"
#include "tests/common/rank_outcomes.h"

namespace longhaul {
namespace {

using CheckFn = void (*)(Communicator&);

CommOptions nccl_order(std::chrono::milliseconds timeout) {
  CommOptions o;
  o.timeout = timeout;
  o.nccl_order = true;
  return o;
}

class NcclOrderRanks : public ::testing::TestWithParam<int> {
 protected:
  void run(CheckFn check) {
    local::run_ranks(GetParam(), [&](Communicator& comm) {
      check(comm);
      EXPECT_TRUE(testing::all_ranks_pass(comm, !::testing::Test::HasFailure()));
    }, nccl_order(std::chrono::seconds(20)));
  }
};

TEST_P(NcclOrderRanks, PointToPoint) { run(testing::check_point_to_point); }
TEST_P(NcclOrderRanks, Exchange) { run(testing::check_exchange); }
TEST_P(NcclOrderRanks, AllToAll) { run(testing::check_all_to_all); }
TEST_P(NcclOrderRanks, AllGather) { run(testing::check_all_gather); }
TEST_P(NcclOrderRanks, ReduceScatter) { run(testing::check_reduce_scatter); }
TEST_P(NcclOrderRanks, AllReduce) { run(testing::check_all_reduce); }
TEST_P(NcclOrderRanks, LowPrecisionSums) { run(testing::check_low_precision_sums); }
TEST_P(NcclOrderRanks, BroadcastAndBarrier) { run(testing::check_broadcast_and_barrier); }
TEST_P(NcclOrderRanks, Split) { run(testing::check_split); }
TEST_P(NcclOrderRanks, ZeroSize) { run(testing::check_zero_size); }
TEST_P(NcclOrderRanks, ArgumentErrors) { run(testing::check_argument_errors); }

INSTANTIATE_TEST_SUITE_P(Ranks, NcclOrderRanks, ::testing::Values(1, 2, 3, 5, 8),
                         [](const auto& info) { return detail::str_cat("P", info.param); });

using Outcome = testing::RankOutcomes;
Outcome run_pair(const CommOptions& options, const std::function<void(Communicator&)>& body) {
  return testing::run_collecting(2, options, body);
}

// Rank 0 sends A (tag 1) then B (tag 2); rank 1 receives B first, then A.
void crossed(Communicator& comm, int64_t a_elems, int64_t b_elems) {
  at::Tensor a = at::ones({a_elems}), b = at::ones({b_elems});
  if (comm.rank() == 0) {
    comm.exchange({P2POp::send(a, 1, 1), P2POp::send(b, 1, 2)})->wait();
  } else {
    comm.exchange({P2POp::recv(b, 0, 2), P2POp::recv(a, 0, 1)})->wait();
  }
}

TEST(NcclOrder, CrossedPostingOrderFailsOnBothRanksNamingBothSides) {
  for (int64_t b_elems : {16, 24}) {  // same byte count (NCCL: silent corruption) and different (NCCL: hang)
    SCOPED_TRACE("B has " + std::to_string(b_elems) + " elements");
    // Tag matching (the plain local backend) accepts the crossed order...
    Outcome plain = run_pair(CommOptions{std::chrono::seconds(5)}, [&](Communicator& c) { crossed(c, 16, b_elems); });
    EXPECT_EQ(plain.error[0], "");
    EXPECT_EQ(plain.error[1], "");
    // ...NCCL's posting order does not, and both ranks say which two operations met.
    Outcome nccl = run_pair(nccl_order(std::chrono::seconds(5)), [&](Communicator& c) { crossed(c, 16, b_elems); });
    for (int r : {0, 1}) {
      const std::string& e = nccl.error[r];
      EXPECT_FALSE(nccl.timeout[r]) << e;
      EXPECT_NE(e.find("NCCL order: rank 1's recv from rank 0 (tag 2"), std::string::npos) << "rank " << r << ": " << e;
      EXPECT_NE(e.find("was matched with rank 0's send to rank 1 (tag 1"), std::string::npos) << "rank " << r << ": " << e;
      EXPECT_NE(e.find(b_elems == 16 ? "silently deliver the wrong data" : "corrupt memory or hang"), std::string::npos)
          << e;
      EXPECT_LT(nccl.seconds[r], 4.0);
    }
  }
}

// Rank 0 posts a receive (tag 15) as its own group, then the send (tag 11) its peer waits for;
// rank 1 does the same. Tag matching completes it; on one NCCL stream each rank's receive blocks
// the send behind it, so both reach the deadline, naming the receive that blocks the stream.
void lone_receive_first(Communicator& comm) {
  const int peer = 1 - comm.rank();
  at::Tensor in = at::empty({8}), out = at::ones({8});
  auto first = comm.exchange({P2POp::recv(in, peer, 15)});
  auto second = comm.exchange({P2POp::send(out, peer, 15)});
  second->wait();
  first->wait();
}

TEST(NcclOrder, ReceivePostedAheadOfItsSendEndsAtTheDeadlineNamingIt) {
  Outcome plain = run_pair(CommOptions{std::chrono::seconds(5)}, lone_receive_first);
  EXPECT_EQ(plain.error[0], "");
  EXPECT_EQ(plain.error[1], "");
  Outcome nccl = run_pair(nccl_order(std::chrono::milliseconds(400)), lone_receive_first);
  for (int r : {0, 1}) {
    const std::string& e = nccl.error[r];
    EXPECT_TRUE(nccl.timeout[r]) << "rank " << r << ": " << e;
    EXPECT_NE(e.find("exchange of 1 operations (NCCL order, operation #2"), std::string::npos) << e;
    EXPECT_NE(e.find("blocked at operation #1"), std::string::npos) << e;
    EXPECT_NE(e.find("waits for its recv from rank " + std::to_string(1 - r) + " (tag 15"), std::string::npos) << e;
    EXPECT_GE(nccl.seconds[r], 0.39);
    EXPECT_LT(nccl.seconds[r], 4.0);
  }
}

// Standalone operations are deferred (done() stays false) until something posts them; a rank's
// operations complete in stream order, so once its barrier is done its earlier send is too.
TEST(NcclOrder, StandaloneOperationsAreDeferredAndCompleteInStreamOrder) {
  local::run_ranks(2, [](Communicator& comm) {
    at::Tensor t = at::full({4}, 7.0), in = at::zeros({4});
    WorkPtr w = comm.rank() == 0 ? comm.send(t, 1, 3) : comm.recv(in, 0, 3);
    EXPECT_FALSE(w->done());
    comm.barrier()->wait();  // posts the deferred group first
    EXPECT_TRUE(w->done());
    if (comm.rank() == 1) EXPECT_TRUE(at::equal(in, t));
  }, nccl_order(std::chrono::seconds(10)));
}

// A rank uses its communicators (the world and its splits) in turn, as NCCL requires. Waited
// first, a ring exchange on the world and an all_reduce on a sub-communicator complete; a receive
// on the world still pending (its sender sends only later) when the rank posts on the
// sub-communicator fails that post on every rank, naming both operations, at once.
TEST(NcclOrder, CommunicatorsOfARankAreUsedInTurn) {
  auto ring_then_half = [](bool wait_first) {
    return [wait_first](Communicator& world) {
      CommPtr half = world.split(world.rank() % 2, world.rank());
      const int peer = (world.rank() + 1) % world.size(), from = (world.rank() + world.size() - 1) % world.size();
      at::Tensor out = at::full({4}, world.rank() + 1.0), in = at::zeros({4}), t = at::ones({3});
      WorkPtr ring = wait_first ? world.exchange({P2POp::send(out, peer, 0), P2POp::recv(in, from, 0)})
                                : world.exchange({P2POp::recv(in, from, 0)});
      if (wait_first) ring->wait();
      half->all_reduce(t)->wait();
      EXPECT_TRUE(at::equal(in, at::full({4}, from + 1.0)));
      EXPECT_TRUE(at::equal(t, at::full({3}, double(half->size()))));
    };
  };
  Outcome in_turn = testing::run_collecting(4, nccl_order(std::chrono::seconds(10)), ring_then_half(true));
  Outcome overlapping = testing::run_collecting(4, nccl_order(std::chrono::seconds(10)), ring_then_half(false));
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(in_turn.error[r], "") << "rank " << r;
    const std::string& e = overlapping.error[r];
    EXPECT_FALSE(overlapping.timeout[r]) << e;
    EXPECT_NE(e.find("all_reduce (NCCL order, operation #1"), std::string::npos) << "rank " << r << ": " << e;
    const std::string busy = detail::str_cat("is posted while backend local (rank ", r, " of 4): exchange of 1 operations");
    EXPECT_NE(e.find(busy), std::string::npos) << e;
    EXPECT_NE(e.find("has not completed"), std::string::npos) << e;
    EXPECT_NE(e.find("in turn"), std::string::npos) << e;
    EXPECT_LT(overlapping.seconds[r], 5.0);
  }
}

// After a deadline the communicator is aborted, as the NCCL backend's is.
TEST(NcclOrder, DeadlineAbortsTheCommunicator) {
  Outcome o = run_pair(nccl_order(std::chrono::milliseconds(300)), [](Communicator& comm) {
    at::Tensor t = at::zeros({2});
    if (comm.rank() == 0) {
      try {
        comm.recv(t, 1, 4)->wait();
      } catch (const TimeoutError&) {
      }
      comm.barrier()->wait();  // throws: unusable
    }
  });
  EXPECT_FALSE(o.timeout[0]);
  EXPECT_NE(o.error[0].find("unusable after an earlier failure"), std::string::npos) << o.error[0];
}

// The routed communicator hands whole operations to one backend: under NCCL order on its host side
// the collectives keep working.
TEST(NcclOrder, RoutedOverAnNcclOrderBackend) {
  local::run_ranks(3, [](Communicator& local) {
    CommPtr routed = routed::wrap(local.shared_from_this(), nullptr);
    testing::check_exchange(*routed);
    testing::check_point_to_point(*routed);
    testing::check_all_gather(*routed);
    EXPECT_TRUE(testing::all_ranks_pass(local, !::testing::Test::HasFailure()));
  }, nccl_order(std::chrono::seconds(20)));
}

}  // namespace
}  // namespace longhaul

// Collective-checking mode (runtime/comm/checked): every Communicator operation still works under
// it (alone and over NCCL-order mode), and collectives whose ranks disagree — reduce op, element
// count, dtype, root, kind, rows per rank, all_to_all counts — fail on every rank with the same
// message naming both calls, where the plain backend mixes, truncates or waits for the deadline.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/env_flag.h"
#include "core/errors.h"
#include "runtime/comm/checked/communicator.h"
#include "runtime/comm/local/communicator.h"
#include "tests/common/collectives.h"
#include "tests/common/rank_outcomes.h"

namespace longhaul {
namespace {

using CheckFn = void (*)(Communicator&);

CommOptions checking(bool nccl_order = false) {
  CommOptions o;
  o.timeout = std::chrono::seconds(20);
  o.nccl_order = nccl_order;
  o.check_collectives = true;
  return o;
}

// The common suite, with the check alone and on top of NCCL-order mode.
class CheckedRanks : public ::testing::TestWithParam<std::tuple<int, bool>> {
 protected:
  void run(CheckFn check) {
    const auto [ranks, nccl_order] = GetParam();
    local::run_ranks(ranks, [&](Communicator& comm) {
      check(comm);
      EXPECT_TRUE(testing::all_ranks_pass(comm, !::testing::Test::HasFailure()));
    }, checking(nccl_order));
  }
};

TEST_P(CheckedRanks, PointToPoint) { run(testing::check_point_to_point); }
TEST_P(CheckedRanks, Exchange) { run(testing::check_exchange); }
TEST_P(CheckedRanks, AllToAll) { run(testing::check_all_to_all); }
TEST_P(CheckedRanks, AllGather) { run(testing::check_all_gather); }
TEST_P(CheckedRanks, ReduceScatter) { run(testing::check_reduce_scatter); }
TEST_P(CheckedRanks, AllReduce) { run(testing::check_all_reduce); }
TEST_P(CheckedRanks, LowPrecisionSums) { run(testing::check_low_precision_sums); }
TEST_P(CheckedRanks, BroadcastAndBarrier) { run(testing::check_broadcast_and_barrier); }
TEST_P(CheckedRanks, Split) { run(testing::check_split); }
TEST_P(CheckedRanks, ZeroSize) { run(testing::check_zero_size); }
TEST_P(CheckedRanks, ArgumentErrors) { run(testing::check_argument_errors); }

std::string checked_ranks_name(const ::testing::TestParamInfo<std::tuple<int, bool>>& info) {
  std::string name = "P";
  name += std::to_string(std::get<0>(info.param));
  if (std::get<1>(info.param)) name += "_NcclOrder";
  return name;
}
INSTANTIATE_TEST_SUITE_P(Ranks, CheckedRanks,
                         ::testing::Values(std::make_tuple(1, false), std::make_tuple(2, false), std::make_tuple(5, false),
                                           std::make_tuple(2, true), std::make_tuple(3, true)),
                         checked_ranks_name);

testing::RankOutcomes run_three(const CommOptions& options, const std::function<void(Communicator&)>& body) {
  return testing::run_collecting(3, options, body);
}

struct Disagreement {
  const char* name;
  std::function<void(Communicator&)> body;  // rank 2 calls something else than ranks 0 and 1
  std::string says;                         // what every rank's error must contain
};

std::vector<Disagreement> disagreements() {
  return {
      {"reduce op",
       [](Communicator& c) {
         at::Tensor t = at::ones({1024});
         c.all_reduce(t, c.rank() == 2 ? ReduceOp::Max : ReduceOp::Sum)->wait();
       },
       "collective #0 differs across ranks: rank 0 calls all_reduce (sum) of 1024 Float elements on cpu, rank 2 "
       "calls all_reduce (max) of 1024 Float elements on cpu"},
      {"element count",
       [](Communicator& c) {
         at::Tensor t = at::ones({c.rank() == 2 ? 512 : 1024});
         c.all_reduce(t)->wait();
       },
       "rank 2 calls all_reduce (sum) of 512 Float elements"},
      {"dtype",
       [](Communicator& c) {
         at::Tensor t = at::ones({64}, c.rank() == 2 ? at::kDouble : at::kFloat);
         c.broadcast(t, 0)->wait();
       },
       "rank 0 calls broadcast from root 0 of 64 Float elements on cpu, rank 2 calls broadcast from root 0 of 64 "
       "Double elements"},
      {"root",
       [](Communicator& c) {
         at::Tensor t = at::ones({8});
         c.broadcast(t, c.rank() == 2 ? 1 : 0)->wait();
       },
       "rank 2 calls broadcast from root 1"},
      {"kind, after an agreed collective",
       [](Communicator& c) {
         at::Tensor t = at::ones({6, 2});
         c.all_reduce(t)->wait();
         at::Tensor out = at::empty({18, 2});
         if (c.rank() == 2)
           c.all_reduce(t)->wait();
         else
           c.all_gather(out, t)->wait();
       },
       "collective #1 differs across ranks: rank 0 calls all_gather of 18 rows of 2 Float elements on cpu, rows per "
       "rank [6, 6, 6], rank 2 calls all_reduce (sum) of 12 Float elements on cpu"},
      {"rows per rank",
       [](Communicator& c) {
         const std::vector<int64_t> rows = c.rank() == 2 ? std::vector<int64_t>{1, 3, 2} : std::vector<int64_t>{1, 2, 3};
         at::Tensor in = at::ones({rows[c.rank()], 4}), out = at::empty({6, 4});
         c.all_gather(out, in, rows)->wait();
       },
       "rows per rank [1, 2, 3], rank 2 calls all_gather of 6 rows of 4 Float elements on cpu, rows per rank [1, 3, 2]"},
      {"all_to_all counts",
       [](Communicator& c) {
         // Rank 0 sends 2 rows to rank 1, which expects 1 from it.
         std::vector<int64_t> in_rows{1, 1, 1}, out_rows{1, 1, 1};
         if (c.rank() == 0) in_rows = {1, 2, 1};
         at::Tensor in = at::ones({in_rows[0] + in_rows[1] + in_rows[2], 3}), out = at::empty({3, 3});
         c.all_to_all(out, in, out_rows, in_rows)->wait();
       },
       "in all_to_all, rank 0 sends 2 rows to rank 1, which expects 1 from it"},
  };
}

TEST(CheckedComm, DisagreeingCollectivesFailOnEveryRankNamingBothCalls) {
  for (const auto& d : disagreements()) {
    SCOPED_TRACE(d.name);
    const testing::RankOutcomes out = run_three(checking(), d.body);
    for (int r = 0; r < 3; ++r) {
      EXPECT_FALSE(out.timeout[r]) << "rank " << r << ": " << out.error[r];
      const std::string prefix = "backend local (rank " + std::to_string(r) + " of 3): collective #";
      EXPECT_EQ(out.error[r].rfind(prefix, 0), 0u) << "rank " << r << ": " << out.error[r];
      EXPECT_NE(out.error[r].find(d.says), std::string::npos) << "rank " << r << ": " << out.error[r];
      const auto after_prefix = [](const std::string& e) { return e.substr(std::min(e.size(), e.find("): ") + 3)); };
      EXPECT_EQ(after_prefix(out.error[r]), after_prefix(out.error[0])) << "every rank says the same";
    }
  }
}

// Without the check the same reduce-op disagreement ends with ranks holding different results,
// and no error.
TEST(CheckedComm, WithoutTheCheckAMixedReduceOpPassesSilently) {
  std::mutex mu;
  std::vector<double> got(3);
  local::run_ranks(3, [&](Communicator& c) {
    at::Tensor t = at::full({4}, static_cast<double>(c.rank() + 1), at::kDouble);
    c.all_reduce(t, c.rank() == 2 ? ReduceOp::Max : ReduceOp::Sum)->wait();
    std::lock_guard<std::mutex> lock(mu);
    got[c.rank()] = t[0].item<double>();
  }, CommOptions{std::chrono::seconds(20)});
  EXPECT_EQ(got[0], 6.0);  // 1 + 2 + 3
  EXPECT_EQ(got[2], 3.0);  // max: the local backend reduces with each rank's own op
}

TEST(CheckedComm, SplitCommunicatorsAreCheckedToo) {
  const testing::RankOutcomes out = run_three(checking(), [](Communicator& c) {
    auto sub = c.split(0, c.rank());
    at::Tensor t = at::ones({c.rank() == 1 ? 3 : 5});
    sub->all_reduce(t)->wait();
  });
  for (int r = 0; r < 3; ++r)
    EXPECT_NE(out.error[r].find("collective #0 differs across ranks: rank 0 calls all_reduce (sum) of 5 Float"),
              std::string::npos)
        << "rank " << r << ": " << out.error[r];
}

TEST(CheckedComm, TheEnvironmentSwitchTakesOnlyZeroOrOne) {
  ::setenv("LONGHAUL_CHECK_COLLECTIVES", "1", 1);
  EXPECT_TRUE(checked::requested_by_env());
  ::setenv("LONGHAUL_CHECK_COLLECTIVES", "0", 1);
  EXPECT_FALSE(checked::requested_by_env());
  ::setenv("LONGHAUL_CHECK_COLLECTIVES", "yes", 1);
  try {
    checked::requested_by_env();
    ADD_FAILURE() << "LONGHAUL_CHECK_COLLECTIVES=yes accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("LONGHAUL_CHECK_COLLECTIVES=yes: expected 1 (on) or 0 (off)"),
              std::string::npos)
        << e.what();
  }
  ::unsetenv("LONGHAUL_CHECK_COLLECTIVES");
  EXPECT_FALSE(checked::requested_by_env());
}

}  // namespace
}  // namespace longhaul

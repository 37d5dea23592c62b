// Context parallelism on local thread-ranks (1–8): every strategy × layout × mask × GQA ratio
// against the float64 reference, autograd through a small model, reproducibility, disagreement.
#include <gtest/gtest.h>

#include "runtime/comm/local/communicator.h"
#include "runtime/errors.h"
#include "tests/common/collectives.h"
#include "tests/common/cp_checks.h"

namespace longhaul {
namespace {

// nccl_order: the thread-ranks match messages and order operations as NCCL does.
void on_ranks(int p, const std::function<void(Communicator&)>& fn, bool nccl_order = false) {
  CommOptions o;
  o.timeout = std::chrono::seconds(60);
  o.nccl_order = nccl_order;
  run_local_ranks(p, [&](Communicator& comm) {
    fn(comm);
    EXPECT_TRUE(testing::all_ranks_pass(comm, !::testing::Test::HasFailure()));
  }, o);
}

class CpLocal : public ::testing::TestWithParam<std::tuple<Strategy, int>> {};

TEST_P(CpLocal, AllLayoutsMasksAndGqaAgainstReference) {
  const auto [s, p] = GetParam();
  on_ranks(p, [&](Communicator& comm) { testing::check_all_cases(comm, s, p == 3 ? 1000 : 97 * p + 13); });
}

TEST_P(CpLocal, AutogradModelMatchesSingleProcess) {
  const auto [s, p] = GetParam();
  on_ranks(p, [&](Communicator& comm) { testing::check_autograd_model(comm, s, Layout::Zigzag); });
}

TEST_P(CpLocal, BitwiseReproducible) {
  const auto [s, p] = GetParam();
  on_ranks(p, [&](Communicator& comm) { testing::check_bitwise_reproducible(comm, s); });
}

INSTANTIATE_TEST_SUITE_P(StrategiesRanks, CpLocal,
                         ::testing::Combine(::testing::Values(Strategy::RingSelfAttention, Strategy::Ring,
                                                              Strategy::AllGatherKV, Strategy::TokenRing,
                                                              Strategy::Ulysses),
                                            ::testing::Values(1, 2, 3, 4, 8)),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_P" +
                                  std::to_string(std::get<1>(info.param));
                         });

// More ranks than tokens: ranks without rows (their queries see nothing) still take part.
TEST(CpLocal, RanksWithoutRows) {
  for (Strategy s : {Strategy::Ring, Strategy::AllGatherKV, Strategy::RingSelfAttention, Strategy::TokenRing})
    on_ranks(8, [&](Communicator& comm) {
      testing::check_against_reference(comm, {s, Layout::Contiguous, "causal", 5, 2, 1, 8, at::kDouble});
      testing::check_against_reference(comm, {s, Layout::Zigzag, "full", 5, 2, 1, 8, at::kDouble});
    });
}

// Hybrid on 4 thread-ranks (2×2) and 8 (2×4, 4×2).
TEST(CpLocal, Hybrid2x2) {
  on_ranks(4, [](Communicator& comm) { testing::check_hybrid_cases(comm, 2, 301); });
}
TEST(CpLocal, Hybrid2x4And4x2) {
  on_ranks(8, [](Communicator& comm) {
    testing::check_hybrid_cases(comm, 2, 403);
    testing::check_hybrid_cases(comm, 4, 403);
  });
}

TEST(CpLocal, UlyssesNamesTheDegreesThatWork) {
  on_ranks(3, [](Communicator& comm) {
    ShardPlan plan(30, std::nullopt, Layout::Zigzag, 3, comm.rank());
    ContextParallel cp(comm.shared_from_this(), {.strategy = Strategy::Ulysses, .layout = Layout::Zigzag});
    at::Tensor q = at::zeros({plan.local_rows(), 4, 8}), k = at::zeros({plan.local_rows(), 2, 8});
    try {
      cp.forward(q, k, k, plan, Mask::causal());
      ADD_FAILURE() << "H = 4 over P = 3 was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("Degrees that work: 1, 2, 4"), std::string::npos) << e.what();
    }
  });
}

TEST(CpLocal, DisagreementIsAnError) {
  on_ranks(3, [](Communicator& comm) { testing::check_disagreement_is_an_error(comm); });
}

TEST(CpLocal, DisagreementAtALaterCallIsAnError) {
  on_ranks(3, [](Communicator& comm) { testing::check_later_disagreement_is_an_error(comm); });
}

// The same matrix with NCCL's rules (runtime/comm/nccl_order): messages matched in posting order
// per pair whatever their tags, each rank's operations one after another as on one CUDA stream.
class CpNcclOrder : public ::testing::TestWithParam<std::tuple<Strategy, int>> {};

TEST_P(CpNcclOrder, AllLayoutsMasksAndGqaAgainstReference) {
  const auto [s, p] = GetParam();
  on_ranks(p, [&](Communicator& comm) { testing::check_all_cases(comm, s, p == 3 ? 1000 : 97 * p + 13); }, true);
}

TEST_P(CpNcclOrder, AutogradModelMatchesSingleProcess) {
  const auto [s, p] = GetParam();
  on_ranks(p, [&](Communicator& comm) { testing::check_autograd_model(comm, s, Layout::Zigzag); }, true);
}

INSTANTIATE_TEST_SUITE_P(StrategiesRanks, CpNcclOrder,
                         ::testing::Combine(::testing::Values(Strategy::RingSelfAttention, Strategy::Ring,
                                                              Strategy::AllGatherKV, Strategy::TokenRing,
                                                              Strategy::Ulysses),
                                            ::testing::Values(2, 3, 4, 8)),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_P" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(CpNcclOrder, RanksWithoutRows) {
  for (Strategy s : {Strategy::Ring, Strategy::AllGatherKV, Strategy::RingSelfAttention, Strategy::TokenRing})
    on_ranks(8, [&](Communicator& comm) {
      testing::check_against_reference(comm, {s, Layout::Contiguous, "causal", 5, 2, 1, 8, at::kDouble});
      testing::check_against_reference(comm, {s, Layout::Zigzag, "full", 5, 2, 1, 8, at::kDouble});
    }, true);
}

TEST(CpNcclOrder, Hybrid2x2) {
  on_ranks(4, [](Communicator& comm) { testing::check_hybrid_cases(comm, 2, 301); }, true);
}

TEST(CpNcclOrder, Hybrid2x4And4x2) {
  on_ranks(8, [](Communicator& comm) {
    testing::check_hybrid_cases(comm, 2, 403);
    testing::check_hybrid_cases(comm, 4, 403);
  }, true);
}

TEST(CpNcclOrder, DisagreementAtALaterCallIsAnError) {
  on_ranks(3, [](Communicator& comm) { testing::check_later_disagreement_is_an_error(comm); }, true);
}

}  // namespace
}  // namespace longhaul

// Context parallelism on local thread-ranks (1–8): every strategy × layout × mask × GQA ratio
// against the float64 reference, autograd through a small model, reproducibility, disagreement.
#include <gtest/gtest.h>

#include "runtime/comm/local/communicator.h"
#include "core/errors.h"
#include "tests/common/collectives.h"
#include "tests/common/cp_checks.h"

namespace longhaul {
namespace {

// nccl_order: the thread-ranks match messages and order operations as NCCL does.
void on_ranks(int p, const std::function<void(Communicator&)>& fn, bool nccl_order = false) {
  CommOptions o;
  o.timeout = std::chrono::seconds(60);
  o.nccl_order = nccl_order;
  local::run_ranks(p, [&](Communicator& comm) {
    fn(comm);
    EXPECT_TRUE(testing::all_ranks_pass(comm, !::testing::Test::HasFailure()));
  }, o);
}

// (strategy, P, NCCL order): with NCCL order the thread-ranks match messages in posting order per
// pair whatever their tags and run each rank's operations one after another, as on one CUDA
// stream (runtime/comm/nccl_order); those cases carry NcclOrder in their names.
class CpLocal : public ::testing::TestWithParam<std::tuple<Strategy, int, bool>> {};

TEST_P(CpLocal, AllLayoutsMasksAndGqaAgainstReference) {
  // Plain variables, not a structured binding: clang 14 (the sanitizer build) cannot capture those.
  const Strategy s = std::get<0>(GetParam());
  const int p = std::get<1>(GetParam());
  const bool nccl = std::get<2>(GetParam());
  on_ranks(p, [&](Communicator& comm) { testing::check_all_cases(comm, s, p == 3 ? 1000 : 97 * p + 13); }, nccl);
}

TEST_P(CpLocal, AutogradModelMatchesSingleProcess) {
  const Strategy s = std::get<0>(GetParam());
  const int p = std::get<1>(GetParam());
  const bool nccl = std::get<2>(GetParam());
  on_ranks(p, [&](Communicator& comm) { testing::check_autograd_model(comm, s, Layout::Zigzag); }, nccl);
}

TEST_P(CpLocal, BitwiseReproducible) {
  const Strategy s = std::get<0>(GetParam());
  const int p = std::get<1>(GetParam());
  const bool nccl = std::get<2>(GetParam());
  on_ranks(p, [&](Communicator& comm) { testing::check_bitwise_reproducible(comm, s); }, nccl);
}

TEST_P(CpLocal, NonFiniteInputsAsInSdpa) {
  const Strategy s = std::get<0>(GetParam());
  const int p = std::get<1>(GetParam());
  const bool nccl = std::get<2>(GetParam());
  on_ranks(p, [&](Communicator& comm) { testing::check_nonfinite_inputs(comm, s); }, nccl);
}

INSTANTIATE_TEST_SUITE_P(StrategiesRanks, CpLocal,
                         ::testing::Combine(::testing::Values(Strategy::RingSelfAttention, Strategy::Ring,
                                                              Strategy::AllGatherKV, Strategy::TokenRing,
                                                              Strategy::Ulysses),
                                            ::testing::Values(1, 2, 3, 4, 8), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_P" +
                                  std::to_string(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_NcclOrder" : "");
                         });

// Every long-context family × every layout (balanced included), forward and gradients.
class CpFamilies : public ::testing::TestWithParam<std::tuple<Strategy, int>> {};

TEST_P(CpFamilies, EveryFamilyAndLayoutAgainstReference) {
  const Strategy s = std::get<0>(GetParam());
  const int p = std::get<1>(GetParam());
  on_ranks(p, [&](Communicator& comm) { testing::check_family_cases(comm, s, 61 * p + 37); });
}

INSTANTIATE_TEST_SUITE_P(StrategiesRanks, CpFamilies,
                         ::testing::Combine(::testing::Values(Strategy::Ring, Strategy::AllGatherKV,
                                                              Strategy::TokenRing, Strategy::Ulysses),
                                            ::testing::Values(1, 2, 3, 4, 8)),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_P" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(CpFamilies, Hybrid) {
  for (int p : {2, 4, 8}) on_ranks(p, [&](Communicator& comm) { testing::check_family_cases(comm, Strategy::Hybrid, 61 * p + 37); });
}

// The families' schedules (empty steps skipped, only needed rows sent) under NCCL's rules.
TEST(CpNcclOrder, FamiliesEveryStrategy) {
  for (Strategy s : {Strategy::Ring, Strategy::AllGatherKV, Strategy::TokenRing, Strategy::Ulysses, Strategy::Hybrid})
    for (int p : {3, 4}) {
      if (s == Strategy::Hybrid && p == 3) continue;
      on_ranks(p, [&](Communicator& comm) { testing::check_family_cases(comm, s, 61 * p + 37); }, true);
    }
}

// rsa keeps its documented limits: a family is refused by name.
TEST(CpLocal, NonFiniteInputsAsInSdpaHybrid2x2) {
  on_ranks(4, [&](Communicator& comm) { testing::check_nonfinite_inputs(comm, Strategy::Hybrid, 2); });
}

TEST(CpLocal, NonFiniteInputsAsInSdpaFloat32) {
  for (int p : {1, 2})
    for (Strategy s : {Strategy::Ring, Strategy::RingSelfAttention})
      on_ranks(p, [&](Communicator& comm) { testing::check_nonfinite_inputs(comm, s, 1, at::kFloat); });
}

TEST(CpLocal, RsaRefusesFamilies) {
  on_ranks(2, [](Communicator& comm) {
    EXPECT_THROW(testing::check_against_reference(comm, {Strategy::RingSelfAttention, Layout::Zigzag, "share_question",
                                                         100, 2, 1, 8, at::kDouble}),
                 Unsupported);
  });
}

// More ranks than tokens: ranks without rows (their queries see nothing) still take part.
void ranks_without_rows(bool nccl_order) {
  for (Strategy s : {Strategy::Ring, Strategy::AllGatherKV, Strategy::RingSelfAttention, Strategy::TokenRing})
    on_ranks(8, [&](Communicator& comm) {
      testing::check_against_reference(comm, {s, Layout::Contiguous, "causal", 5, 2, 1, 8, at::kDouble});
      testing::check_against_reference(comm, {s, Layout::Zigzag, "full", 5, 2, 1, 8, at::kDouble});
    }, nccl_order);
}

// Hybrid on 4 thread-ranks (2×2) and 8 (2×4, 4×2).
void hybrid_2x2(bool nccl_order) {
  on_ranks(4, [](Communicator& comm) { testing::check_hybrid_cases(comm, 2, 301); }, nccl_order);
}
void hybrid_2x4_and_4x2(bool nccl_order) {
  on_ranks(8, [](Communicator& comm) {
    testing::check_hybrid_cases(comm, 2, 403);
    testing::check_hybrid_cases(comm, 4, 403);
  }, nccl_order);
}

TEST(CpLocal, RanksWithoutRows) { ranks_without_rows(false); }
TEST(CpNcclOrder, RanksWithoutRows) { ranks_without_rows(true); }
TEST(CpLocal, Hybrid2x2) { hybrid_2x2(false); }
TEST(CpNcclOrder, Hybrid2x2) { hybrid_2x2(true); }
TEST(CpLocal, Hybrid2x4And4x2) { hybrid_2x4_and_4x2(false); }
TEST(CpNcclOrder, Hybrid2x4And4x2) { hybrid_2x4_and_4x2(true); }

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

TEST(CpLocal, OneInvalidRankFailsEveryRankAtOnce) {
  on_ranks(3, [](Communicator& comm) { testing::check_one_invalid_rank_fails_every_rank_at_once(comm); });
}

TEST(CpNcclOrder, DisagreementAtALaterCallIsAnError) {
  on_ranks(3, [](Communicator& comm) { testing::check_later_disagreement_is_an_error(comm); }, true);
}

}  // namespace
}  // namespace longhaul

// Context parallelism under mpirun -np 1..4 (shared memory and TCP): every strategy × layout ×
// mask (every long-context family included) × GQA ratio against the float64 reference,
// autograd, reproducibility, disagreement.
#include <gtest/gtest.h>

#include "tests/common/collectives.h"
#include "tests/common/cp_checks.h"
#include "tests/multiprocess/mpi_fixture.h"

namespace longhaul {
namespace {

class MpiCp : public MpiTest {
 protected:
  // Odd lengths: T = 1000 on 3 ranks, smaller elsewhere to keep CI short.
  int64_t T() { return comm().size() == 3 ? 1000 : 317; }
};

TEST_F(MpiCp, RingSelfAttention) { testing::check_all_cases(comm(), Strategy::RingSelfAttention, T()); }
TEST_F(MpiCp, Ring) { testing::check_all_cases(comm(), Strategy::Ring, T()); }
TEST_F(MpiCp, AllGatherKV) { testing::check_all_cases(comm(), Strategy::AllGatherKV, T()); }
TEST_F(MpiCp, TokenRing) { testing::check_all_cases(comm(), Strategy::TokenRing, T()); }
TEST_F(MpiCp, Hybrid) {
  if (comm().size() % 2 != 0)
    GTEST_SKIP() << "hybrid 2×(P/2) needs an even number of ranks; P=" << comm().size()
                 << " (the np2/np4 runs cover it; on CPU thread-ranks: tests/unit/cp_test.cpp)";
  testing::check_hybrid_cases(comm(), 2, T());
}
TEST_F(MpiCp, Ulysses) { testing::check_all_cases(comm(), Strategy::Ulysses, T()); }
// Every long-context family × every layout (balanced included), each strategy.
TEST_F(MpiCp, Families) {
  const int64_t t = 61 * comm().size() + 37;
  for (Strategy s : {Strategy::Ring, Strategy::AllGatherKV, Strategy::TokenRing, Strategy::Ulysses})
    testing::check_family_cases(comm(), s, t);
  if (comm().size() % 2 == 0) testing::check_family_cases(comm(), Strategy::Hybrid, t);
}
TEST_F(MpiCp, Autograd) {
  for (Strategy s : {Strategy::RingSelfAttention, Strategy::Ring, Strategy::AllGatherKV, Strategy::TokenRing, Strategy::Ulysses})
    testing::check_autograd_model(comm(), s, Layout::Zigzag);
}
TEST_F(MpiCp, BitwiseReproducible) {
  for (Strategy s : {Strategy::RingSelfAttention, Strategy::Ring, Strategy::AllGatherKV, Strategy::TokenRing, Strategy::Ulysses})
    testing::check_bitwise_reproducible(comm(), s);
}
TEST_F(MpiCp, DisagreementIsAnError) { testing::check_disagreement_is_an_error(comm()); }
TEST_F(MpiCp, DisagreementAtALaterCallIsAnError) { testing::check_later_disagreement_is_an_error(comm()); }
TEST_F(MpiCp, OneInvalidRankFailsEveryRankAtOnce) { testing::check_one_invalid_rank_fails_every_rank_at_once(comm()); }

}  // namespace
}  // namespace longhaul

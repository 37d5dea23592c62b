// `longhaul train --cp auto` on local thread-ranks: the planner gives short buckets to data
// parallelism and long ones to CP groups, and the run equals fixed --cp W and fixed --cp 1 on the
// same batches for ring, tokenring and ulysses at W = 2 and 4; resuming with auto degrees is
// bitwise; a forced degree that does not divide W, a bucket no degree fits, ranks that disagree
// on the table and a checkpoint of another world size are refused before any step.
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>

#include "core/errors.h"
#include "tests/common/train_local.h"

namespace longhaul::train {
namespace {

using testing_local::expect_every_rank_refuses;
using testing_local::run;
using testing_local::tiny_options;

// 64·W tokens per step over buckets 64 and 128: W and W/2 sequences per step, so the 128-token
// bucket leaves half the ranks idle unless it runs on groups of 2 (the planner's table: 64:1,
// 128:2 at W = 2 and 4). Fixed rates: the table must not depend on this machine's speed.
TrainOptions auto_options(Strategy s, int world = 2) {
  TrainOptions o = tiny_options(TrainOptions::kCpAuto, s);
  o.model.kv_heads = 2;  // GQA
  o.buckets = {6, 7};
  o.tokens_per_step = 64 * world;
  o.kernel_gflops = 30;
  o.dense_gflops = 60;
  return o;
}

class TrainAuto : public ::testing::TestWithParam<Strategy> {};

TEST_P(TrainAuto, EqualsFixedCpWAndFixedCp1) {
  const int steps = 6;
  for (int w : {2, 4}) {
    const TrainOptions a = auto_options(GetParam(), w);
    const testing::TrainRun automatic = run(w, a, steps);
    const std::set<int> used(automatic.degrees.begin(), automatic.degrees.end());
    EXPECT_EQ(used, (std::set<int>{1, 2})) << "W=" << w << ": the steps should run on 1 and on 2 ranks";
    for (int fixed : {w, 1}) {
      TrainOptions f = a;
      f.cp = fixed;
      const testing::TrainRun r = run(w, f, steps);
      EXPECT_EQ(r.degrees, std::vector<int>(steps, fixed));
      testing::expect_same_run(r, automatic, std::string(to_string(GetParam())) + " W=" + std::to_string(w) +
                                                 " auto vs fixed cp " + std::to_string(fixed));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Strategies, TrainAuto,
                         ::testing::Values(Strategy::Ring, Strategy::TokenRing, Strategy::Ulysses),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(TrainAutoResume, ResumeWithAutoDegreesIsBitwise) {
  testing_local::expect_resume_bitwise(auto_options(Strategy::Ring, 4), 4);
}

TEST(TrainAutoBadInput, RefusedBeforeAnyStep) {
  // A forced degree that does not divide the world.
  expect_every_rank_refuses(
      4, [](int) { return tiny_options(3, Strategy::Ring); },
      [](int) { return std::string("--cp 3 does not divide the world of 4 ranks"); });
  // No degree fits the memory limit: the bucket, the limit and the ranks it would need are named.
  expect_every_rank_refuses(
      2,
      [](int) {
        TrainOptions o = auto_options(Strategy::Ring);
        o.memory_gib = 1e-6;
        return o;
      },
      [](int) { return std::string("bucket 2^6 (64 tokens): no CP degree of the 2 ranks fits the memory limit"); });
  // Ranks that disagree: rank 1 believes compute is free, so it plans no CP at all.
  expect_every_rank_refuses(
      4,
      [](int rank) {
        TrainOptions o = auto_options(Strategy::Ring, 4);
        if (rank == 1) o.kernel_gflops = o.dense_gflops = 1e9;
        return o;
      },
      [](int) { return std::string("ranks disagree on the CP degree of bucket 2^"); });
  // A rank that cannot plan at all: it names its memory limit, the others the disagreement.
  expect_every_rank_refuses(
      2,
      [](int rank) {
        TrainOptions o = auto_options(Strategy::Ring);
        if (rank == 1) o.memory_gib = 1e-6;
        return o;
      },
      [](int rank) { return std::string(rank == 1 ? "fits the memory limit" : "a rank could not plan it"); });
}

// The degrees may change on resume, the world size may not.
TEST(TrainAutoResume, CheckpointOfAnotherWorldSizeIsRefused) {
  const std::string dir = testing_local::temp_dir(), path = data::files::join(dir, "w2.lhc");
  const TrainOptions o = auto_options(Strategy::Ring);
  run(2, o, 1, [&](Trainer& t, int) { t.save(path); });
  expect_every_rank_refuses(
      4,
      [&](int) { return o; },
      [](int) { return std::string("world size (ranks) differs: the checkpoint has '2', this run has '4'"); }, path);
  data::files::remove_tree(dir);
}

}  // namespace
}  // namespace longhaul::train

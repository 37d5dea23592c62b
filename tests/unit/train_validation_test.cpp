// Validation loss on a held-out store (Trainer::validation_loss, `longhaul train --eval-data`): on
// the very sequences of a training step it is that step's loss (float64, to rounding); it is the
// same on every data- and context-parallel split and with micro-batches; it takes the bucket's
// first pieces, at least one sequence, and has no row for an empty bucket; a store whose
// vocabulary the model cannot hold is refused by name.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <mutex>
#include <string>
#include <vector>

#include "core/errors.h"
#include "data/token_source.h"
#include "runtime/comm/local/communicator.h"
#include "tests/common/train_local.h"
#include "tests/common/train_runs.h"
#include "train/task.h"
#include "train/trainer.h"

namespace longhaul::train {
namespace {

using testing_local::tiny_options;

// Rank 0's rows on `world` thread-ranks, before any step.
std::vector<LossRow> validate(int world, const TrainOptions& o, int64_t tokens_per_length) {
  std::vector<LossRow> rows;
  std::mutex mu;
  local::run_ranks(world, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
    auto held_out = task_source(testing::tiny_recall_task());
    const std::vector<LossRow> mine = t.validation_loss(*held_out, tokens_per_length);
    std::lock_guard<std::mutex> lock(mu);
    if (comm.rank() == 0) rows = mine;
  });
  return rows;
}

// A store of exactly one training step (8 documents of 64 tokens, 512 tokens per step): the
// validation loss of the untrained model on it is the first step's loss.
TEST(TrainValidation, OnAStepsSequencesItIsThatStepsLoss) {
  TaskOptions one_step = testing::tiny_recall_task();
  one_step.min_log2 = one_step.max_log2 = 6;
  one_step.tokens = 512;
  TrainOptions o = tiny_options(1, Strategy::Ring);
  o.model.precision = Precision::Fp64;
  local::run_ranks(1, [&](Communicator& comm) {
    auto source = task_source(one_step);
    ASSERT_EQ(source->doc_offsets().size(), 9u);
    Trainer t(comm.shared_from_this(), source, o);
    const std::vector<LossRow> rows = t.validation_loss(*source, 512);
    ASSERT_EQ(rows.size(), 1u) << "buckets 32 and 128 are empty: no row";
    EXPECT_EQ(rows[0].context, 64);
    EXPECT_EQ(rows[0].sequences, 8);
    EXPECT_EQ(rows[0].targets, 8 * 63);
    const StepStats s = t.step();
    EXPECT_EQ(s.seq_len, 64);
    EXPECT_EQ(s.targets, rows[0].targets);
    EXPECT_NEAR(rows[0].loss, s.loss, 1e-12 * s.loss);
    // After the update the same sequences score better.
    EXPECT_LT(t.validation_loss(*source, 512)[0].loss, rows[0].loss);
    // tokens_per_length 1: still one sequence.
    EXPECT_EQ(t.validation_loss(*source, 1)[0].sequences, 1);
  });
}

TEST(TrainValidation, SameOnEveryDataAndContextParallelSplit) {
  const TrainOptions base = tiny_options(1, Strategy::Ring);
  const std::vector<LossRow> ref = validate(1, base, 1024);
  ASSERT_EQ(ref.size(), 3u);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(ref[i].context, int64_t(32) << i);
    EXPECT_EQ(ref[i].sequences, 1024 / ref[i].context);
    EXPECT_GT(ref[i].loss, 3.5);  // about ln(67) = 4.2 before training
    EXPECT_LT(ref[i].loss, 5.0);
  }
  struct Split {
    int world, cp, micro_batches;
    Strategy strategy;
  };
  for (const Split& split : {Split{2, 1, 1, Strategy::Ring}, Split{2, 2, 1, Strategy::Ring},
                             Split{4, 2, 2, Strategy::Ulysses}, Split{4, 4, 1, Strategy::TokenRing}}) {
    TrainOptions o = tiny_options(split.cp, split.strategy);
    o.micro_batches = split.micro_batches;
    const std::vector<LossRow> rows = validate(split.world, o, 1024);
    const std::string what = "world " + std::to_string(split.world) + " cp " + std::to_string(split.cp) + " " +
                             to_string(split.strategy) + ", " + std::to_string(split.micro_batches) + " micro-batches";
    ASSERT_EQ(rows.size(), ref.size()) << what;
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_EQ(rows[i].context, ref[i].context) << what;
      EXPECT_EQ(rows[i].sequences, ref[i].sequences) << what;
      EXPECT_EQ(rows[i].targets, ref[i].targets) << what;
      EXPECT_NEAR(rows[i].loss, ref[i].loss, testing::kLossTol * ref[i].loss) << what << ", length " << ref[i].context;
    }
  }
}

TEST(TrainValidation, AVocabularyTheModelCannotHoldIsRefused) {
  local::run_ranks(1, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), tiny_options(1, Strategy::Ring));
    data::MemoryTokenSource wide = data::MemoryTokenSource::synthetic({64, 64}, /*vocab_size=*/1000, /*eos_id=*/999);
    try {
      t.validation_loss(wide, 128);
      ADD_FAILURE() << "a store of 1000 tokens was evaluated by a model of " << TaskVocab::size;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("the evaluation store's vocabulary (1000) does not fit the model's (" +
                                           std::to_string(TaskVocab::size) + ")"),
                std::string::npos)
          << e.what();
    }
  });
}

}  // namespace
}  // namespace longhaul::train

// What the train/ tests on local thread-ranks share (tests/unit, and tests/gpu with the ranks on
// one GPU): tiny options, a run that returns rank 0's losses, degrees and parameters, and the
// check that a stopped and resumed run reproduces the uninterrupted one bitwise.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "core/errors.h"
#include "data/files.h"
#include "runtime/comm/local/communicator.h"
#include "tests/common/train_runs.h"
#include "train/device.h"
#include "train/task.h"
#include "train/trainer.h"

namespace longhaul::train::testing_local {

inline TrainOptions tiny_options(int cp, Strategy s) {
  TrainOptions o;
  o.model.vocab = TaskVocab::size;
  o.model.dim = 32;
  o.model.layers = 2;
  o.model.heads = 4;
  o.model.kv_heads = 4;
  o.model.seed = 7;
  o.optim.lr = 1e-3;
  o.optim.warmup = 2;
  o.optim.total_steps = 8;
  o.cp = cp;
  o.cp_options.strategy = s;
  o.buckets = {5, 7};
  o.tokens_per_step = 512;
  o.seed = 3;
  return o;
}

// Runs `steps` steps on `world` thread-ranks and returns rank 0's losses, degrees and parameters.
// `between(trainer, step)` runs after each step on every rank (checkpoints). With o.device cuda
// the thread-ranks share that GPU, each on a stream of its own.
inline testing::TrainRun run(int world, const TrainOptions& o, int steps,
                             const std::function<void(Trainer&, int)>& between = nullptr) {
  testing::TrainRun r;
  std::mutex mu;
  CommOptions co;
  co.timeout = std::chrono::seconds(60);
  const TaskOptions task = testing::tiny_recall_task();
  local::run_ranks(world, [&](Communicator& comm) {
    local::enter_device_rank(training_device(o.device));
    Trainer t(comm.shared_from_this(), task_source(task), o);
    std::vector<double> losses;
    std::vector<int> degrees;
    for (int i = 0; i < steps; ++i) {
      const StepStats s = t.step();
      losses.push_back(s.loss);
      degrees.push_back(s.cp_degree);
      if (between) between(t, i + 1);
    }
    if (comm.rank() == 0) {
      std::lock_guard<std::mutex> lock(mu);
      r.losses = losses;
      r.degrees = degrees;
      r.params = testing::parameter_copies(t);
    }
  }, co);
  return r;
}

// Every rank of `world` constructs a Trainer with options_of(rank) (and loads `checkpoint` when
// given); every one must throw InvalidArgument containing its needle (nothing hangs: the errors
// are raised collectively).
inline void expect_every_rank_refuses(int world, const std::function<TrainOptions(int)>& options_of,
                                      const std::function<std::string(int)>& needle_of, const std::string& checkpoint = "") {
  CommOptions co;
  co.timeout = std::chrono::seconds(30);
  local::run_ranks(world, [&](Communicator& comm) {
    try {
      Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), options_of(comm.rank()));
      if (!checkpoint.empty()) t.load(checkpoint);
      ADD_FAILURE() << "rank " << comm.rank() << ": no error (expected '" << needle_of(comm.rank()) << "')";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle_of(comm.rank())), std::string::npos)
          << "rank " << comm.rank() << ": " << e.what();
    }
  }, co);
}

inline std::string temp_dir() { return data::files::make_temp_dir("longhaul_train_test"); }

// 8 steps straight, and 3 steps, a checkpoint, new trainers, a load and the 5 others: the same
// losses bitwise. Over a small data set (3·2^10 tokens) the run also crosses an epoch.
inline void expect_resume_bitwise(const TrainOptions& o, int world) {
  const std::string dir = temp_dir(), path = data::files::join(dir, "ckpt.lhc");
  TaskOptions task = testing::tiny_recall_task();
  task.tokens = 3 << 10;
  auto source = [&] { return task_source(task); };
  const int total = 8, stop = 3;
  std::vector<double> whole, resumed;
  std::mutex mu;
  auto keep = [&](std::vector<double>& into, const std::vector<double>& l, Communicator& comm) {
    std::lock_guard<std::mutex> lock(mu);
    if (comm.rank() == 0) into = l;
  };
  local::run_ranks(world, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), source(), o);
    std::vector<double> l;
    for (int i = 0; i < total; ++i) l.push_back(t.step().loss);
    keep(whole, l, comm);
  });
  local::run_ranks(world, [&](Communicator& comm) {  // "killed" after step 3: the trainers are gone
    Trainer t(comm.shared_from_this(), source(), o);
    for (int i = 0; i < stop; ++i) t.step();
    t.save(path);
  });
  local::run_ranks(world, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), source(), o);
    t.load(path);
    EXPECT_EQ(t.steps_done(), stop);
    std::vector<double> l;
    while (t.steps_done() < total) l.push_back(t.step().loss);
    keep(resumed, l, comm);
  });
  ASSERT_EQ(whole.size(), size_t(total));
  ASSERT_EQ(resumed.size(), size_t(total - stop));
  for (int i = stop; i < total; ++i) {
    EXPECT_TRUE(std::isfinite(whole[i]));
    EXPECT_EQ(resumed[i - stop], whole[i]) << "step " << i + 1;  // bitwise
  }
  data::files::remove_tree(dir);
}

}  // namespace longhaul::train::testing_local

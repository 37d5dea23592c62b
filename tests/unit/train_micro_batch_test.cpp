// Gradient accumulation (TrainOptions::micro_batches, `longhaul train --micro-batches`): a step run
// in N passes is the same step as one pass (float64: to rounding; float32 with data and context
// parallelism: within the CP tolerances), each rank runs min(N, its sequences) passes, --cp auto
// plans the degrees of a pass, a stopped
// and resumed run is bitwise the uninterrupted one, the preflight runs and names the passes, and a
// count that does not divide the step is refused by name.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/errors.h"
#include "runtime/comm/local/communicator.h"
#include "tests/common/train_local.h"
#include "tests/common/train_runs.h"
#include "train/preflight.h"
#include "train/task.h"
#include "train/trainer.h"

namespace longhaul::train {
namespace {

using testing::expect_same_run;
using testing_local::tiny_options;

struct MicroRun {
  testing::TrainRun run;      // rank 0's losses and parameters
  std::vector<int> passes;    // rank 0's passes per step
  std::vector<int64_t> lengths;
  std::vector<double> grad_norms;  // the world's, before clipping: Adam's update hides a scaled gradient
};

// `steps` steps on `world` thread-ranks (with a preflight first when asked).
MicroRun run_micro(int world, const TrainOptions& o, int steps, bool preflight = false) {
  MicroRun r;
  std::mutex mu;
  local::run_ranks(world, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
    if (preflight) t.preflight(t.preflight_shapes());
    MicroRun mine;
    for (int i = 0; i < steps; ++i) {
      const StepStats s = t.step();
      mine.run.losses.push_back(s.loss);
      mine.run.degrees.push_back(s.cp_degree);
      mine.passes.push_back(s.passes);
      mine.lengths.push_back(s.seq_len);
      mine.grad_norms.push_back(s.grad_norm);
    }
    if (comm.rank() == 0) {
      mine.run.params = testing::parameter_copies(t);
      std::lock_guard<std::mutex> lock(mu);
      r = std::move(mine);
    }
  });
  return r;
}

// A share of `sequences` sequences in N passes: one per sequence while there are fewer.
void expect_passes(const MicroRun& r, int64_t tokens_per_step, int groups, int n, const std::string& what) {
  bool split = false;
  for (size_t i = 0; i < r.passes.size(); ++i) {
    const int64_t share = tokens_per_step / r.lengths[i] / groups;
    EXPECT_EQ(r.passes[i], std::min<int64_t>(n, share)) << what << ", step " << i + 1 << " (" << r.lengths[i]
                                                        << "-token sequences)";
    split |= r.passes[i] > 1;
  }
  EXPECT_TRUE(split) << what << ": no step was cut into several passes";
}

void expect_same_gradient_norms(const MicroRun& a, const MicroRun& b, double tol, const std::string& what) {
  ASSERT_EQ(a.grad_norms.size(), b.grad_norms.size());
  for (size_t i = 0; i < a.grad_norms.size(); ++i)
    EXPECT_NEAR(a.grad_norms[i], b.grad_norms[i], tol * a.grad_norms[i]) << what << ", step " << i + 1;
}

TEST(TrainMicroBatches, AccumulationIsTheSameStepInFloat64) {
  const int steps = 6;
  TrainOptions o = tiny_options(1, Strategy::Ring);
  o.model.precision = Precision::Fp64;
  const MicroRun one = run_micro(1, o, steps);
  ASSERT_EQ(one.passes, std::vector<int>(steps, 1));
  for (int n : {2, 4, 16}) {
    o.micro_batches = n;
    const MicroRun r = run_micro(1, o, steps);
    const std::string what = std::to_string(n) + " micro-batches, fp64";
    expect_passes(r, o.tokens_per_step, 1, n, what);
    EXPECT_EQ(r.lengths, one.lengths) << what;  // the same steps, drawn in the same order
    expect_same_run(one.run, r.run, what, 1e-12, 1e-12);
    expect_same_gradient_norms(one, r, 1e-12, what);
  }
}

// dp 2 × cp 2 in 2 passes against one process in one; dp 2 in 4 passes, where a group's share of
// the 128-token steps holds 2 sequences (2 passes, the other 2 not run).
TEST(TrainMicroBatches, WithDataAndContextParallelismEqualsOneProcess) {
  const int steps = 4;
  const TrainOptions base = tiny_options(1, Strategy::Ring);
  const MicroRun ref = run_micro(1, base, steps);
  TrainOptions o = tiny_options(2, Strategy::Ring);
  o.micro_batches = 2;
  const MicroRun cp = run_micro(4, o, steps);
  expect_passes(cp, o.tokens_per_step, 2, 2, "dp 2 x cp 2, 2 micro-batches");
  expect_same_run(ref.run, cp.run, "dp 2 x cp 2, 2 micro-batches");
  expect_same_gradient_norms(ref, cp, testing::kLossTol, "dp 2 x cp 2, 2 micro-batches");
  o = base;
  o.micro_batches = 4;
  const MicroRun dp = run_micro(2, o, steps);
  expect_passes(dp, o.tokens_per_step, 2, 4, "dp 2, 4 micro-batches");
  expect_same_run(ref.run, dp.run, "dp 2, 4 micro-batches");
  expect_same_gradient_norms(ref, dp, testing::kLossTol, "dp 2, 4 micro-batches");
}

// --cp auto plans the degrees for a pass: 256 tokens per step on 2 ranks over buckets 64 and 128
// give every bucket at least one sequence per rank (data parallelism alone), but in 2 passes of 128
// tokens the 128-token bucket holds one sequence, which the planner splits over both ranks. Either
// way the run is the one-process run. Fixed rates: the table must not depend on this machine.
TEST(TrainMicroBatches, CpAutoPlansTheDegreesOfAPass) {
  TrainOptions o = tiny_options(TrainOptions::kCpAuto, Strategy::Ring);
  o.buckets = {6, 7};
  o.tokens_per_step = 256;
  o.kernel_gflops = 30;
  o.dense_gflops = 60;
  const int steps = 6;
  const testing::TrainRun whole = testing_local::run(2, o, steps);
  EXPECT_EQ(std::set<int>(whole.degrees.begin(), whole.degrees.end()), std::set<int>{1});
  o.micro_batches = 2;
  const testing::TrainRun passes = testing_local::run(2, o, steps);
  EXPECT_EQ(std::set<int>(passes.degrees.begin(), passes.degrees.end()), (std::set<int>{1, 2}))
      << "the 128-token steps should run on groups of 2";
  TrainOptions one = o;
  one.cp = 1;
  one.micro_batches = 1;
  const testing::TrainRun ref = testing_local::run(1, one, steps);
  expect_same_run(ref, whole, "cp auto, one pass");
  expect_same_run(ref, passes, "cp auto, 2 micro-batches");
}

TEST(TrainMicroBatches, ResumeIsBitwise) {
  TrainOptions o = tiny_options(2, Strategy::Ring);
  o.micro_batches = 2;
  testing_local::expect_resume_bitwise(o, 2);
}

// The preflight runs a step's passes (and names them); the run after it is bitwise the run without.
TEST(TrainMicroBatches, PreflightRunsThePassesAndChangesNothing) {
  const std::vector<PreflightShape> shapes = preflight_shapes({32, 128}, [](int64_t) { return 1; }, 512, 4);
  ASSERT_EQ(shapes.size(), 1u);
  EXPECT_EQ(describe(shapes[0]), "128-token sequences at cp 1 (4 per step, 4 micro-batches)");
  EXPECT_EQ(describe(preflight_shapes({128}, [](int64_t) { return 2; }, 512)[0]), "128-token sequences at cp 2 (4 per step)");
  TrainOptions o = tiny_options(1, Strategy::Ring);
  o.micro_batches = 4;
  const MicroRun plain = run_micro(2, o, 3), checked = run_micro(2, o, 3, /*preflight=*/true);
  EXPECT_EQ(plain.run.losses, checked.run.losses);
  ASSERT_EQ(plain.run.params.size(), checked.run.params.size());
  for (size_t i = 0; i < plain.run.params.size(); ++i) EXPECT_TRUE(plain.run.params[i].equal(checked.run.params[i])) << i;
}

TEST(TrainMicroBatches, ACountThatDoesNotDivideTheStepIsRefusedByName) {
  for (int n : {0, -2, 3}) {
    TrainOptions o = tiny_options(1, Strategy::Ring);
    o.micro_batches = n;
    std::string message;
    local::run_ranks(1, [&](Communicator& comm) {
      try {
        Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
      } catch (const InvalidArgument& e) {
        message = e.what();
      }
    });
    EXPECT_NE(message.find("--micro-batches " + std::to_string(n) + " must be a positive divisor of --tokens-per-step 512"),
              std::string::npos)
        << n << ": " << message;
  }
  EXPECT_NO_THROW(check_micro_batches(512, 512));
}

}  // namespace
}  // namespace longhaul::train

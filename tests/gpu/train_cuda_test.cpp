// `longhaul train --device cuda` (train/ on local thread-ranks sharing one GPU, each on a stream of
// its own): float64 on the GPU equals float64 on the CPU within 1e-9 at every step, alone and as
// CP = 2, and in micro-batches; bf16 trains; a checkpoint written on the GPU resumes on the CPU;
// the memory preflight measures the device; the validation loss on the GPU equals the CPU's.
// Skipped, with the reason, without a CUDA device; the CPU side of --dtype is in
// tests/unit/train_dtype_test.cpp, of the preflight, micro-batches and validation beside it.
#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "data/files.h"
#include "tests/common/train_local.h"
#include "tests/common/train_runs.h"

namespace longhaul::train {
namespace {

using testing::expect_loss_falls;
using testing::expect_same_run;
using testing_local::run;

int cuda_devices() {
  return at::hasCUDA() ? static_cast<int>(c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).deviceCount()) : 0;
}

#define SKIP_WITHOUT_CUDA() \
  if (cuda_devices() == 0) GTEST_SKIP() << "no CUDA device on this machine (torch sees none); CPU runs are in tests/unit"

constexpr int kSteps = 20;
// float64 on both: only the order of sums differs (cuBLAS vs CPU BLAS, the CUDA attention kernel
// vs the CPU one), ~1e-16 relative per operation.
constexpr double kFp64Tol = 1e-9;

TrainOptions options(int cp, Precision p, const std::string& device) {
  TrainOptions o = testing_local::tiny_options(cp, Strategy::Ring);
  o.optim.total_steps = kSteps;
  o.model.precision = p;
  o.device = device;
  return o;
}

TEST(TrainCuda, Fp64EqualsCpuFp64) {
  SKIP_WITHOUT_CUDA();
  const testing::TrainRun cpu = run(1, options(1, Precision::Fp64, "cpu"), kSteps);
  const testing::TrainRun gpu = run(1, options(1, Precision::Fp64, "cuda"), kSteps);
  expect_same_run(gpu, cpu, "cuda fp64 vs cpu fp64", kFp64Tol, kFp64Tol);
}

// The memory preflight on the GPU reads the CUDA allocator's peak (the step's tensors live there)
// and leaves the run as it was: float64 losses equal those of a run without it.
TEST(TrainCuda, PreflightMeasuresTheDeviceAndChangesNothing) {
  SKIP_WITHOUT_CUDA();
  const TrainOptions o = options(1, Precision::Fp64, "cuda");
  const testing::TrainRun plain = run(1, o, 4);
  std::vector<PreflightResult> seen;
  std::vector<double> losses;
  local::run_ranks(1, [&](Communicator& comm) {
    local::enter_device_rank(training_device(o.device));
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
    seen = t.preflight(t.preflight_shapes());
    for (int i = 0; i < 4; ++i) losses.push_back(t.step().loss);
  });
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].device_memory);
  EXPECT_GT(seen[0].step_bytes, 0);  // activations in float64 on the device
  EXPECT_GE(seen[0].peak_bytes, seen[0].step_bytes);
  EXPECT_GT(seen[0].available_bytes, 0);
  EXPECT_NE(describe(seen[0]).find("allocated on the GPU"), std::string::npos) << describe(seen[0]);
  ASSERT_EQ(losses.size(), plain.losses.size());
  for (size_t i = 0; i < losses.size(); ++i) EXPECT_NEAR(losses[i], plain.losses[i], kFp64Tol * plain.losses[i]) << i;
}

// CP = 2 on two thread-ranks of the local backend sharing the GPU: the CP exchanges move CUDA
// tensors; the same split on the CPU is the reference.
TEST(TrainCuda, Cp2ThreadRanksFp64EqualCpuFp64) {
  SKIP_WITHOUT_CUDA();
  const int steps = 10;
  const testing::TrainRun cpu = run(2, options(2, Precision::Fp64, "cpu"), steps);
  const testing::TrainRun gpu = run(2, options(2, Precision::Fp64, "cuda"), steps);
  expect_same_run(gpu, cpu, "cuda fp64 cp 2 vs cpu fp64 cp 2", kFp64Tol, kFp64Tol);
}

// Gradient accumulation on the device: 4 passes per step (the loss sum and the gradients stay on
// the GPU between them) equal one pass on the CPU.
TEST(TrainCuda, MicroBatchesFp64EqualOnePassOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  const int steps = 6;
  const testing::TrainRun cpu = run(1, options(1, Precision::Fp64, "cpu"), steps);
  TrainOptions o = options(1, Precision::Fp64, "cuda");
  o.micro_batches = 4;
  const testing::TrainRun gpu = run(1, o, steps);
  expect_same_run(gpu, cpu, "cuda fp64 4 micro-batches vs cpu fp64 one pass", kFp64Tol, kFp64Tol);
}

// The held-out loss rows (forward only, on the length's CP groups) computed on the GPU, CP = 2
// over two thread-ranks, equal the CPU's on one rank.
TEST(TrainCuda, ValidationLossEqualsTheCpus) {
  SKIP_WITHOUT_CUDA();
  auto rows = [](int world, const std::string& device) {
    const TrainOptions o = options(world, Precision::Fp64, device);
    std::vector<LossRow> mine;
    std::mutex mu;
    local::run_ranks(world, [&](Communicator& comm) {
      local::enter_device_rank(training_device(o.device));
      Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
      auto held_out = task_source(testing::tiny_recall_task());
      std::vector<LossRow> r = t.validation_loss(*held_out, 512);
      std::lock_guard<std::mutex> lock(mu);
      if (comm.rank() == 0) mine = std::move(r);
    });
    return mine;
  };
  const std::vector<LossRow> cpu = rows(1, "cpu"), gpu = rows(2, "cuda");
  ASSERT_EQ(cpu.size(), 3u);
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_EQ(gpu[i].context, cpu[i].context);
    EXPECT_EQ(gpu[i].sequences, cpu[i].sequences);
    EXPECT_EQ(gpu[i].targets, cpu[i].targets);
    EXPECT_NEAR(gpu[i].loss, cpu[i].loss, kFp64Tol * cpu[i].loss) << "context " << cpu[i].context;
  }
}

TEST(TrainCuda, Bf16LossFalls) {
  SKIP_WITHOUT_CUDA();
  const testing::TrainRun r = run(1, options(1, Precision::Bf16, "cuda"), kSteps);
  EXPECT_EQ(r.params.front().scalar_type(), at::kFloat);  // the master weights
  expect_loss_falls(r, "cuda bf16");
}

// Nothing device-specific is stored: 3 steps on the GPU, a checkpoint, 3 more on the CPU equal 6
// on the GPU (float64, so within kFp64Tol).
TEST(TrainCuda, CheckpointWrittenOnTheGpuResumesOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  const std::string dir = testing_local::temp_dir(), path = data::files::join(dir, "ckpt.lhc");
  const TrainOptions gpu = options(1, Precision::Fp64, "cuda"), cpu = options(1, Precision::Fp64, "cpu");
  const testing::TrainRun whole = run(1, gpu, 6);
  run(1, gpu, 3, [&](Trainer& t, int step) {
    if (step == 3) t.save(path);
  });
  std::vector<double> resumed;
  local::run_ranks(1, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), cpu);
    t.load(path);
    while (t.steps_done() < 6) resumed.push_back(t.step().loss);
  });
  ASSERT_EQ(resumed.size(), size_t(3));
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(resumed[i], whole.losses[3 + i], kFp64Tol * whole.losses[3 + i]) << "step " << 4 + i;
  data::files::remove_tree(dir);
}

}  // namespace
}  // namespace longhaul::train

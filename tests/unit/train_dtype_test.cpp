// --dtype and --device of train/ on the CPU (one thread-rank, tiny model, 20 steps): fp64 is the
// fp32 model in float64, bf16 trains and tracks fp32, a stopped and resumed run in either is
// bitwise the uninterrupted one, a checkpoint of another --dtype is refused, and --device cuda
// on a machine without a CUDA device is refused by name. The same on a GPU: tests/gpu.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/errors.h"
#include "data/files.h"
#include "tests/common/train_local.h"
#include "tests/common/train_runs.h"
#include "train/device.h"
#include "train/trainer.h"

namespace longhaul::train {
namespace {

using testing::expect_loss_falls;
using testing::expect_same_run;
using testing_local::run;
using testing_local::tiny_options;

constexpr int kSteps = 20;

TrainOptions options(Precision p) {
  TrainOptions o = tiny_options(1, Strategy::Ring);
  o.optim.total_steps = kSteps;
  o.model.precision = p;
  return o;
}

// Rounding float32 differs from float64 at 1e-7 relative per operation; Adam turns that into
// parameter differences of about lr × 1e-7 per step, far below these bounds after 20 steps.
TEST(TrainDtype, Fp64IsTheFp32ModelInFloat64) {
  const testing::TrainRun f32 = run(1, options(Precision::Fp32), kSteps);
  const testing::TrainRun f64 = run(1, options(Precision::Fp64), kSteps);
  EXPECT_EQ(f64.params.front().scalar_type(), at::kDouble);
  expect_same_run(f64, f32, "fp64 vs fp32", 1e-4, 1e-4);
}

// bf16 matmuls and attention over float32 masters: finite, falling, within 0.2% of fp32's losses
// (measured: 4e-5; each loss averages the rounding errors of 512 tokens' logits).
TEST(TrainDtype, Bf16TrainsAndTracksFp32) {
  const testing::TrainRun f32 = run(1, options(Precision::Fp32), kSteps);
  const testing::TrainRun bf16 = run(1, options(Precision::Bf16), kSteps);
  EXPECT_EQ(bf16.params.front().scalar_type(), at::kFloat);  // the master weights
  expect_loss_falls(bf16, "bf16");
  double worst = 0;
  for (int i = 0; i < kSteps; ++i) worst = std::max(worst, std::abs(bf16.losses[i] - f32.losses[i]) / f32.losses[i]);
  std::printf("  bf16 vs fp32: max relative loss difference %.3g\n", worst);
  for (int i = 0; i < kSteps; ++i) EXPECT_NEAR(bf16.losses[i], f32.losses[i], 2e-3 * f32.losses[i]) << "step " << i + 1;
}

TEST(TrainDtype, ResumeIsBitwiseInFp64AndBf16) {
  for (Precision p : {Precision::Fp64, Precision::Bf16}) {
    SCOPED_TRACE(to_string(p));
    testing_local::expect_resume_bitwise(options(p), 1);
  }
}

TEST(TrainDtype, CheckpointOfAnotherDtypeIsRefused) {
  const std::string dir = testing_local::temp_dir(), path = data::files::join(dir, "ckpt.lhc");
  run(1, options(Precision::Fp32), 1, [&](Trainer& t, int) { t.save(path); });
  for (Precision p : {Precision::Fp64, Precision::Bf16}) {
    local::run_ranks(1, [&](Communicator& comm) {
      Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), options(p));
      try {
        t.load(path);
        ADD_FAILURE() << "a checkpoint of fp32 was loaded into a " << to_string(p) << " run";
      } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find(std::string("dtype (--dtype) differs: the checkpoint has 'fp32', this run has '") +
                                             to_string(p) + "'"),
                  std::string::npos)
            << e.what();
      }
    });
  }
  data::files::remove_tree(dir);
}

TEST(TrainDevice, NamesAreParsedAndUnknownOnesRefused) {
  EXPECT_TRUE(training_device("cpu").is_cpu());
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:0x", "CPU"})
    EXPECT_THROW(training_device(bad), InvalidArgument) << bad;
}

TEST(TrainDevice, CudaWithoutADeviceIsRefusedByName) {
  if (at::hasCUDA() && c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).deviceCount() > 0)
    GTEST_SKIP() << "this machine has a CUDA device, so the refusal cannot be seen here (tests/gpu trains on it)";
  TrainOptions o = options(Precision::Fp32);
  o.device = "cuda";
  local::run_ranks(1, [&](Communicator& comm) {
    try {
      Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
      ADD_FAILURE() << "a trainer was built on --device cuda without a CUDA device";
    } catch (const Unsupported& e) {  // a valid request this machine cannot run (exit code 3)
      const std::string m = e.what();
      std::printf("  refused: %s\n", m.c_str());
      EXPECT_NE(m.find("--device cuda was asked for"), std::string::npos) << m;
      EXPECT_NE(m.find("the devices here: only cpu"), std::string::npos) << m;
    }
  });
}

}  // namespace
}  // namespace longhaul::train

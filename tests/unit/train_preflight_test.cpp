// The memory preflight of a training run (train/preflight.h): which steps it runs, that a run is
// bitwise the same with or without it, what it measures, that a step which cannot allocate fails
// there, before step 1, as torch's out-of-memory error naming the shape and the rank, and that the
// evaluation stays within a step's tokens per forward.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <string>

#include "core/aten_boundary.h"
#include "data/files.h"
#include "runtime/comm/local/communicator.h"
#include "train/checkpoint.h"
#include "tests/common/train_local.h"
#include "tests/common/sanitized.h"
#include "tests/common/train_runs.h"
#include "train/host_share.h"
#include "train/preflight.h"
#include "train/trainer.h"

namespace longhaul::train {
namespace {

using testing_local::tiny_options;

std::string shapes_text(const std::vector<PreflightShape>& shapes) {
  std::string s;
  for (const auto& p : shapes) s += std::to_string(p.seq_len) + ":" + std::to_string(p.degree) + "x" +
                                    std::to_string(p.sequences) + " ";
  return s;
}

TEST(TrainPreflight, RunsTheLongestStepAndTheLongestShard) {
  const std::vector<int64_t> lengths{64, 128, 256, 512, 1024, 2048, 4096};
  const int64_t b = 4096;
  // A fixed degree: the longest sequences have the longest shard too.
  EXPECT_EQ(shapes_text(preflight_shapes(lengths, [](int64_t) { return 2; }, b)), "4096:2x1 ");
  // The main command's plan: 2048 at c = 1 and 4096 at c = 2 have equal shards; the longer wins.
  EXPECT_EQ(shapes_text(preflight_shapes(lengths, [](int64_t L) { return L == 4096 ? 2 : 1; }, b)), "4096:2x1 ");
  // A degree that grows faster than the length: the longest shard is a shorter length's.
  EXPECT_EQ(shapes_text(preflight_shapes(lengths, [](int64_t L) { return L >= 2048 ? int(L / 512) : 1; }, b)),
            "4096:8x1 1024:1x4 ");
  EXPECT_TRUE(preflight_shapes({}, [](int64_t) { return 1; }, b).empty());
}

TEST(TrainPreflight, SyntheticBatchIsOneDocumentPerSequence) {
  const data::Batch a = synthetic_batch(16, 3, 67, 5), again = synthetic_batch(16, 3, 67, 5);
  ASSERT_EQ(a.num_tokens(), 48);
  EXPECT_EQ(a.num_sequences(), 3);
  EXPECT_EQ(a.cu_seqlens, (std::vector<int64_t>{0, 16, 32, 48}));
  EXPECT_EQ(a.tokens, again.tokens);  // seeded
  for (int64_t i = 0; i < 48; ++i) {
    EXPECT_TRUE(a.tokens[i] >= 0 && a.tokens[i] < 67) << i;
    EXPECT_EQ(a.positions[i], i % 16) << i;
    EXPECT_EQ(a.targets[i], i % 16 == 15 ? -100 : a.tokens[i + 1]) << i;
  }
  EXPECT_THROW(synthetic_batch(0, 1, 67, 5), InvalidArgument);
}

// Same losses and parameters, bitwise, with and without the preflight: it leaves no gradient, no
// optimiser state, no sampler or RNG step behind.
TEST(TrainPreflight, ARunIsBitwiseTheSameWithOrWithoutIt) {
  for (const int cp : {1, 2}) {
    TrainOptions o = tiny_options(cp, Strategy::Ring);
    std::vector<PreflightResult> seen;
    std::vector<PreflightShape> planned;
    std::mutex mu;
    const testing::TrainRun plain = testing_local::run(2, o, 4);
    testing::TrainRun checked;
    local::run_ranks(2, [&](Communicator& comm) {
      Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
      const std::vector<PreflightShape> shapes = t.preflight_shapes();
      const std::vector<PreflightResult> results = t.preflight(shapes);
      std::vector<double> losses;
      for (int i = 0; i < 4; ++i) losses.push_back(t.step().loss);
      std::lock_guard<std::mutex> lock(mu);
      if (comm.rank() != 0) return;
      planned = shapes, seen = results;
      checked.losses = losses;
      checked.params = testing::parameter_copies(t);
    });
    // Buckets 2^5..2^7: the longest, 128 tokens, 512 / 128 = 4 sequences per step.
    EXPECT_EQ(shapes_text(planned), "128:" + std::to_string(cp) + "x4 ") << "cp " << cp;
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_FALSE(seen[0].device_memory);
    EXPECT_GT(seen[0].peak_bytes, 0) << "cp " << cp;
    EXPECT_GE(seen[0].step_bytes, 0);
    EXPECT_LE(seen[0].step_bytes, seen[0].peak_bytes);
    EXPECT_GT(seen[0].available_bytes, 0);
    EXPECT_TRUE(seen[0].busiest_rank == 0 || seen[0].busiest_rank == 1) << seen[0].busiest_rank;
    EXPECT_EQ(seen[0].ceiling_bytes, 0) << "thread-ranks share one process: no ceiling";
    EXPECT_NE(describe(seen[0]).find("128-token sequences at cp " + std::to_string(cp) + " (4 per step): peak "),
              std::string::npos) << describe(seen[0]);
    ASSERT_EQ(checked.losses.size(), plain.losses.size());
    for (size_t i = 0; i < plain.losses.size(); ++i) EXPECT_EQ(checked.losses[i], plain.losses[i]) << "step " << i + 1;
    ASSERT_EQ(checked.params.size(), plain.params.size());
    for (size_t i = 0; i < plain.params.size(); ++i) EXPECT_TRUE(at::equal(checked.params[i], plain.params[i])) << i;
  }
}

// On the CPU a process runs the preflight's step under its share of what the host may still give
// (RLIMIT_DATA, lifted afterwards), and the run goes on as without it; thread-ranks, which share
// one process and so one limit, run without.
TEST(TrainPreflight, OneProcessRunsItUnderItsShareOfTheHost) {
  const TrainOptions o = tiny_options(1, Strategy::Ring);
  const testing::TrainRun plain = testing_local::run(1, o, 4);
  local::run_ranks(1, [&](Communicator& comm) {
    const HostShare share = host_share(comm);
    EXPECT_TRUE(share.limited) << share.why_not;
    EXPECT_EQ(share.processes, 1);
    EXPECT_GT(share.bytes, 0);
    EXPECT_EQ(share.bytes, share.available_bytes);
    EXPECT_NE(describe(share).find("each process held to "), std::string::npos) << describe(share);
    EXPECT_NE(describe(share).find(" over 1 process on this host"), std::string::npos) << describe(share);
    rlimit before{}, after{};
    ASSERT_EQ(getrlimit(RLIMIT_DATA, &before), 0);
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
    const std::vector<PreflightResult> seen = t.preflight(t.preflight_shapes());
    ASSERT_EQ(getrlimit(RLIMIT_DATA, &after), 0);
    EXPECT_EQ(after.rlim_cur, before.rlim_cur) << "the ceiling outlived the preflight";
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_GT(seen[0].ceiling_bytes, 0);
    EXPECT_LE(seen[0].ceiling_bytes, seen[0].available_bytes);
    EXPECT_NE(describe(seen[0]).find(", each process held to "), std::string::npos) << describe(seen[0]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(t.step().loss, plain.losses[size_t(i)]) << "step " << i + 1;
  });
  local::run_ranks(2, [&](Communicator& comm) {
    const HostShare share = host_share(comm);
    EXPECT_FALSE(share.limited);
    EXPECT_EQ(share.why_not, "thread-ranks share this process");
    EXPECT_EQ(describe(share), "no per-process ceiling (thread-ranks share this process)");
  });
}

// The preflight makes the optimiser state the first update would make (step 0, zero moments), so
// its peaks count it; a resumed run keeps the checkpoint's state, and goes on bitwise as the
// uninterrupted run.
TEST(TrainPreflight, MakesTheOptimiserStateAndKeepsAResumedOne) {
  const TrainOptions o = tiny_options(1, Strategy::Ring);
  const std::string dir = testing_local::temp_dir();
  const std::string fresh = data::files::join(dir, "fresh.lhc"), mid = data::files::join(dir, "mid.lhc");
  std::vector<double> whole, resumed;
  local::run_ranks(1, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
    t.preflight(t.preflight_shapes());
    t.save(fresh);
    for (int i = 0; i < 5; ++i) whole.push_back(t.step().loss);
  });
  const CheckpointFile c = read_checkpoint(fresh);
  EXPECT_EQ(c.string("step"), "0");
  local::run_ranks(1, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
    for (const auto& [name, p] : t.model().ordered_parameters()) {
      EXPECT_EQ(c.string("adam." + name + ".step"), "0") << name;
      EXPECT_TRUE(at::equal(c.tensor("adam." + name + ".exp_avg"), at::zeros_like(p))) << name;
      EXPECT_TRUE(at::equal(c.tensor("adam." + name + ".exp_avg_sq"), at::zeros_like(p))) << name;
    }
    for (int i = 0; i < 3; ++i) t.step();
    t.save(mid);
  });
  local::run_ranks(1, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
    t.load(mid);
    t.preflight(t.preflight_shapes());  // must not replace the loaded moments
    while (t.steps_done() < 5) resumed.push_back(t.step().loss);
  });
  ASSERT_EQ(whole.size(), 5u);
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[0], whole[3]);
  EXPECT_EQ(resumed[1], whole[4]);
  data::files::remove_tree(dir);
}

// VmSize of this process, bytes.
double virtual_size_bytes() {
  std::ifstream in("/proc/self/status");
  std::string key;
  double kib = 0;
  while (in >> key) {
    if (key == "VmSize:") {
      in >> kib;
      return kib * 1024;
    }
    in.ignore(1 << 12, '\n');
  }
  return 0;
}

// A step that cannot allocate: the address space is capped just above what the process holds, so
// the first large tensor of a 2^20-token step fails in torch's CPU allocator.
TEST(TrainPreflight, AStepThatCannotAllocateFailsNamed) {
#ifdef LONGHAUL_TEST_SANITIZED
  GTEST_SKIP() << "AddressSanitizer and ThreadSanitizer reserve terabytes of address space for their shadow "
                  "memory, so no RLIMIT_AS cap can be placed above it; the unsanitized build runs this test";
#endif
  TrainOptions o = tiny_options(1, Strategy::Ring);
  local::run_ranks(1, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
    t.preflight({{128, 1, 4}});  // thread pools and kernels warm before the cap
    rlimit old{};
    ASSERT_EQ(getrlimit(RLIMIT_AS, &old), 0);
    const double vm = virtual_size_bytes();
    ASSERT_GT(vm, 0);
    rlimit capped = old;
    capped.rlim_cur = static_cast<rlim_t>(vm) + (rlim_t(48) << 20);
    if (old.rlim_cur != RLIM_INFINITY) capped.rlim_cur = std::min(capped.rlim_cur, old.rlim_cur);  // already tighter
    ASSERT_EQ(setrlimit(RLIMIT_AS, &capped), 0);
    std::string message;
    bool oom = false;
    try {
      t.preflight({{128, 1, 8192}});  // 2^20 tokens: the embedding's output alone is 128 MiB
    } catch (const c10::OutOfMemoryError& e) {
      oom = true;
      message = e.what_without_backtrace();
    } catch (const std::exception& e) {
      message = e.what();
    }
    ASSERT_EQ(setrlimit(RLIMIT_AS, &old), 0);
    EXPECT_TRUE(oom) << "not torch's out-of-memory type: " << message;
    EXPECT_NE(message.find("train: preflight: a step of 128-token sequences at cp 1 (8192 per step) ran out of "
                           "memory on rank 0, before any training step"),
              std::string::npos) << message;
    EXPECT_NE(message.find("--no-preflight"), std::string::npos) << message;
    // Nothing was lost: the trainer goes on with a step that fits.
    EXPECT_TRUE(std::isfinite(t.step().loss));
  });
}

// The evaluation holds at most a step's share of tokens in one forward, so the preflight bounds its
// memory too: one document per forward (256 tokens per step over 2 ranks, 128-token documents)
// counts the same hits as all 16 of a rank's documents in one forward (float64: only the order of
// sums differs).
TEST(TrainPreflight, EvaluationInStepSizedForwardsCountsTheSame) {
  TrainOptions narrow = tiny_options(1, Strategy::Ring);
  narrow.model.precision = Precision::Fp64;
  narrow.tokens_per_step = 256;
  TrainOptions wide = narrow;
  wide.tokens_per_step = 1 << 13;
  auto evaluate = [](const TrainOptions& o) {
    std::vector<EvalRow> rows;
    std::mutex mu;
    local::run_ranks(2, [&](Communicator& comm) {
      Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), o);
      const std::vector<EvalRow> r = t.evaluate(5, 7, 32, 2, 11);
      std::lock_guard<std::mutex> lock(mu);
      if (comm.rank() == 0) rows = r;
    });
    return rows;
  };
  const std::vector<EvalRow> a = evaluate(narrow), b = evaluate(wide);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].context, int64_t(32) << i);
    EXPECT_EQ(a[i].total, 32) << a[i].context;
    EXPECT_EQ(a[i].total, b[i].total) << a[i].context;
    EXPECT_EQ(a[i].correct, b[i].correct) << a[i].context;
  }
}

TEST(TrainPreflight, HostAllocationFailuresAreOutOfMemoryAtTheBoundary) {
  EXPECT_THROW(aten_boundary("entry", [] { throw std::bad_alloc(); }), c10::OutOfMemoryError);
  // torch's CPU allocator reports a failed allocation as a plain enforce failure.
  try {
    aten_boundary("entry", [] { return at::empty({int64_t(1) << 50}, at::kByte); });
    ADD_FAILURE() << "a 1 PiB tensor was allocated";
  } catch (const c10::OutOfMemoryError& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("entry: "), std::string::npos) << e.what();
  }
}

// The run's kept heap may settle above the preflight's peak: a warning when the steps took more
// than 1/kKeptHeapGrowth of what a process may add, none on a GPU or without a ceiling.
TEST(TrainPreflight, WarnsWhenItsStepsLeaveLittleHeadroom) {
  constexpr double GiB = double(1 << 30);
  PreflightResult r;
  r.shape = PreflightShape{4096, 1, 2, 1};
  r.ceiling_bytes = 10 * GiB;
  r.step_bytes = 6 * GiB;  // 6 × 1.5 = 9 fits in 10
  EXPECT_EQ(headroom_warning(r), "");
  r.step_bytes = 7 * GiB;
  const std::string w = headroom_warning(r);
  EXPECT_NE(w.find("train: warning: the preflight's steps of 4096-token sequences at cp 1 (2 per step) added 7.00 GiB, "
                   "70% of the 10.00 GiB a process may add"),
            std::string::npos) << w;
  EXPECT_NE(w.find("settled up to 1.5x above the preflight's peak, so a later step may stop the run (exit 7)"),
            std::string::npos) << w;
  r.device_memory = true;
  EXPECT_EQ(headroom_warning(r), "") << "a GPU's memory is the device's, without a kept host heap";
  r.device_memory = false;
  r.ceiling_bytes = 0;
  EXPECT_EQ(headroom_warning(r), "") << "no ceiling (thread-ranks): nothing to compare with";
}

// A training step past its ceiling names the step, the rank, what the process held and might add,
// what bounds it, the checkpoint that stands and what to change.
TEST(TrainPreflight, AStepPastItsCeilingIsNamed) {
  constexpr double GiB = double(1 << 30);
  HostShare share;
  share.limited = true;
  share.available_bytes = 3 * GiB;
  share.processes = 2;
  share.bytes = 1.5 * GiB;
  share.bound = "MemAvailable";
  const std::string m = step_out_of_memory_message("step 12", 1, "torch's words", 20 * GiB, share,
                                                   "the checkpoint c.lhc holds step 10");
  for (const char* part : {"train: step 12 ran out of memory on rank 1 (torch's words); each process might add 1.50 "
                           "GiB to the 20.00 GiB it held: 3.00 GiB available (MemAvailable) over 2 processes on this host",
                           "the checkpoint c.lhc holds step 10", "Fewer tokens per rank fit: a lower --max-log2",
                           "--no-host-ceiling"})
    EXPECT_NE(m.find(part), std::string::npos) << part << "\n" << m;
}

// A step's share follows the host's memory now, for the same processes; a share without a ceiling
// stays without one.
TEST(TrainPreflight, AStepsShareIsReadAgainForTheSameProcesses) {
  HostShare start;
  start.limited = true;
  start.processes = 3;
  start.available_bytes = 1;
  start.bytes = 1.0 / 3;
  const HostShare now = host_share_now(start);
  EXPECT_TRUE(now.limited);
  EXPECT_EQ(now.processes, 3);
  EXPECT_GT(now.available_bytes, 1) << "this host has more than a byte available";
  EXPECT_DOUBLE_EQ(now.bytes, now.available_bytes / 3);
  EXPECT_FALSE(now.bound.empty());
  HostShare none;
  none.why_not = "thread-ranks share this process";
  EXPECT_FALSE(host_share_now(none).limited);
  EXPECT_EQ(host_share_now(none).why_not, none.why_not);
}

}  // namespace
}  // namespace longhaul::train

// `longhaul train`'s library (train/) on local thread-ranks: CP=2 and CP=4 with each strategy
// equal the CP=1 run, data parallel × CP (2 × 2) equals one process, activation checkpointing
// changes nothing, resume after a stop reproduces the losses bitwise, and damaged or mismatched
// checkpoints are refused. Tiny sizes: each test runs in seconds on 2 cores.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <cstring>
#include <fstream>
#include <mutex>

#include "data/decomposition.h"
#include "data/files.h"
#include "runtime/comm/local/communicator.h"
#include "core/errors.h"
#include "train/checkpoint.h"
#include "train/rope.h"
#include "train/task.h"
#include "train/trainer.h"
#include "tests/common/train_runs.h"
#include "tests/common/train_local.h"

namespace longhaul::train {
namespace {

using testing::expect_same_run;
using testing::tiny_recall_task;
using RunResult = testing::TrainRun;
using testing_local::expect_every_rank_refuses;
using testing_local::expect_resume_bitwise;
using testing_local::run;
using testing_local::temp_dir;
using testing_local::tiny_options;

TEST(TrainModel, RopeAnglesInFloat64) {
  at::Tensor pos = at::tensor(std::vector<int64_t>{0, 1, 999983, 1 << 20}, at::kLong);
  RopeTables t = rope_tables(pos, 8, 10000.0, at::kFloat);
  for (int i = 0; i < 4; ++i) {
    const double angle = double(pos[i].item<int64_t>());  // frequency 1 (i = 0)
    EXPECT_NEAR(t.cos[i][0][0].item<double>(), std::cos(angle), 1e-6);
    EXPECT_NEAR(t.sin[i][0][0].item<double>(), std::sin(angle), 1e-6);
  }
  // The slowest pair (i = 3 of head dim 8) turns by position · theta^(-6/8): the base is used.
  for (double theta : {10000.0, 500000.0}) {
    RopeTables slow = rope_tables(pos, 8, theta, at::kDouble);
    for (int i = 0; i < 4; ++i) {
      const double angle = double(pos[i].item<int64_t>()) * std::pow(theta, -0.75);
      EXPECT_NEAR(slow.cos[i][0][3].item<double>(), std::cos(angle), 1e-9) << "theta " << theta;
    }
  }
}

// The model's attention path (rope → ContextParallel::attention, one rank) has the gradients of a
// naive causal softmax attention: the loop trains attention, not only embeddings and MLPs.
TEST(TrainModel, AttentionGradientsMatchNaive) {
  local::run_ranks(1, [&](Communicator& comm) {
    ContextParallel cp(comm.shared_from_this(), Options{});
    const int64_t T = 24, H = 2, D = 8;
    at::Tensor q = at::randn({T, H, D}, at::kDouble).requires_grad_(true);
    at::Tensor k = at::randn({T, H, D}, at::kDouble).requires_grad_(true);
    at::Tensor v = at::randn({T, H, D}, at::kDouble).requires_grad_(true);
    at::Tensor w = at::randn({T, H, D}, at::kDouble);
    ShardPlan plan(T, std::nullopt, Layout::Zigzag, 1, 0);
    (cp.attention(q, k, v, plan, Mask::causal()) * w).sum().backward();
    at::Tensor q2 = q.detach().clone().requires_grad_(true), k2 = k.detach().clone().requires_grad_(true);
    at::Tensor v2 = v.detach().clone().requires_grad_(true);
    at::Tensor s = at::einsum("thd,shd->hts", {q2, k2}) / std::sqrt(double(D));
    s = s.masked_fill(at::ones({T, T}, at::kBool).triu(1), -INFINITY);
    (at::einsum("hts,shd->thd", {at::softmax(s, -1), v2}) * w).sum().backward();
    EXPECT_TRUE(at::allclose(q.grad(), q2.grad(), 1e-9, 1e-9));
    EXPECT_TRUE(at::allclose(k.grad(), k2.grad(), 1e-9, 1e-9));
    EXPECT_TRUE(at::allclose(v.grad(), v2.grad(), 1e-9, 1e-9));
  });
}

TEST(TrainTask, DocumentsArePowersOfTwoAndDdKeepsThemWhole) {
  const TaskOptions task = tiny_recall_task();
  auto src = task_source(task);
  for (int64_t d = 0; d < src->num_documents(); ++d) {
    const int64_t l = src->doc_length(d);
    EXPECT_EQ(l & (l - 1), 0) << "document " << d << " has " << l << " tokens";
    int32_t last;
    src->read(static_cast<int64_t>(src->doc_offsets()[d + 1]) - 1, 1, &last);
    EXPECT_EQ(last, TaskVocab::eos);
  }
  data::Decomposition dd(src->doc_offsets(), {task.min_log2, task.max_log2});
  EXPECT_EQ(dd.num_pieces(), src->num_documents());
  EXPECT_EQ(dd.dropped_tokens(), 0);
  int64_t q = 0;
  auto doc = task_document(6, 3, 42, &q);
  EXPECT_EQ(doc[q - 1], TaskVocab::query);
  bool given = false;  // the asked key's value was given early
  for (int i = 1; i < 7; i += 2) given |= doc[i] == doc[q] && doc[i + 1] == doc[q + 1];
  EXPECT_TRUE(given);
}

class TrainCp : public ::testing::TestWithParam<Strategy> {};

// GQA (4 query heads, 2 key/value heads) with each layout; hybrid = ring over Ulysses pairs.
TEST_P(TrainCp, Cp2AndCp4EqualCp1) {
  const int steps = 4;
  TrainOptions base = tiny_options(1, Strategy::Ring);
  base.model.kv_heads = 2;
  const RunResult ref = run(1, base, steps);
  ASSERT_EQ(ref.losses.size(), size_t(steps));
  EXPECT_LT(ref.losses.back(), ref.losses.front());
  for (int p : {2, 4}) {
    for (Layout layout : {Layout::Zigzag, Layout::Striped, Layout::Contiguous}) {
      TrainOptions o = base;
      o.cp = p;
      o.cp_options.strategy = GetParam();
      o.cp_options.layout = layout;
      if (GetParam() == Strategy::Hybrid) o.cp_options.ulysses_degree = 2;
      const RunResult r = run(p, o, steps);
      expect_same_run(ref, r, std::string(to_string(GetParam())) + " P=" + std::to_string(p) + " " + to_string(layout));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Strategies, TrainCp,
                         ::testing::Values(Strategy::Ring, Strategy::TokenRing, Strategy::Ulysses,
                                           Strategy::AllGatherKV, Strategy::Hybrid),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(TrainDp, DataParallelTimesCpEqualsOneProcess) {
  const RunResult ref = run(1, tiny_options(1, Strategy::Ring), 4);
  const RunResult r = run(4, tiny_options(2, Strategy::Ring), 4);  // dp 2 × cp 2
  expect_same_run(ref, r, "dp 2 x cp 2");
}

// A long-context mask family and the area-balanced layout: CP 2 trains as one process does.
TEST(TrainMask, FamilyOnBalancedLayoutEqualsOneProcess) {
  for (const auto& [mask, param] : std::vector<std::pair<std::string, int64_t>>{{"sliding_window_causal", 24},
                                                                                  {"block_causal_document", 16}}) {
    TrainOptions one = tiny_options(1, Strategy::Ring), two = tiny_options(2, Strategy::Ring);
    for (TrainOptions* o : {&one, &two}) o->mask = mask, o->mask_param = param;
    two.cp_options.layout = Layout::Balanced;
    const RunResult ref = run(1, one, 4);
    expect_same_run(ref, run(2, two, 4), mask + " cp 2 balanced");
    // The mask is applied: the default (causal_document) trains to other losses.
    EXPECT_NE(ref.losses, run(1, tiny_options(1, Strategy::Ring), 4).losses) << mask;
  }
}

// A step packs several sequences (DD pieces, one document each) back to back: no family lets one
// sequence see another. So causal trains as causal_document bit for bit, share_question too (one
// document: causal), and a prefix longer than the shortest bucket is cut to each sequence (it was
// refused on the packed length) and trains as prefix_lm_document. On CP 2 as on one rank.
TEST(TrainMask, PackedSequencesNeverSeeEachOther) {
  auto with = [](int cp, const std::string& mask, int64_t param) {
    TrainOptions o = tiny_options(cp, Strategy::Ring);
    o.mask = mask, o.mask_param = param;
    return o;
  };
  const RunResult per_document = run(1, with(1, "causal_document", 0), 3);
  EXPECT_EQ(run(1, with(1, "causal", 0), 3).losses, per_document.losses);
  EXPECT_EQ(run(1, with(1, "share_question", 0), 3).losses, per_document.losses);
  expect_same_run(per_document, run(2, with(2, "causal", 0), 3), "causal cp 2");
  const RunResult prefix = run(1, with(1, "prefix_lm_document", 48), 3);  // buckets of 32…128 tokens
  EXPECT_EQ(run(1, with(1, "prefix_lm_causal", 48), 3).losses, prefix.losses);
  EXPECT_NE(prefix.losses, per_document.losses);  // the prefix is applied
}

// Ring Self-Attention takes one sequence under a full or causal mask. A run of one sequence per
// pass trains as ring does; one that would pack sequences, or has documents, is refused by every
// rank before its first step (it used to fail at the first step of a short bucket).
TEST(TrainRsa, OneSequencePerPassTrainsAndPackingIsRefusedUpFront) {
  auto rsa = [](int cp, const std::string& mask, int min_log2, int64_t tokens) {
    TrainOptions o = tiny_options(cp, Strategy::RingSelfAttention);
    o.mask = mask, o.buckets = {min_log2, 7}, o.tokens_per_step = tokens;
    return o;
  };
  TrainOptions ring = rsa(1, "causal", 7, 128);
  ring.cp_options.strategy = Strategy::Ring;
  expect_same_run(run(1, ring, 3), run(2, rsa(2, "causal", 7, 128), 3), "rsa cp 2, one 128-token sequence per pass");
  // The evaluations run shorter sequences one per forward (ring packs them).
  local::run_ranks(2, [&](Communicator& comm) {
    Trainer t(comm.shared_from_this(), task_source(testing::tiny_recall_task()), rsa(2, "causal", 7, 128));
    const auto rows = t.evaluate(5, 7, 4, 2, 11);
    ASSERT_EQ(rows.size(), 3u);
    for (const auto& row : rows) EXPECT_EQ(row.total, 4) << row.context;  // one question per document
    EXPECT_EQ(t.validation_loss(*task_source(testing::tiny_recall_task()), 256).size(), 1u);
  });
  expect_every_rank_refuses(2, [&](int) { return rsa(2, "causal", 5, 512); },
                            [](int) { return std::string("a pass packs 16 sequences of 32 tokens"); });
  expect_every_rank_refuses(2, [&](int) { return rsa(2, "causal_document", 7, 128); },
                            [](int) { return std::string("the mask is causal_document; use ring"); });
}

TEST(TrainModel, ActivationCheckpointingChangesNothing) {
  TrainOptions o = tiny_options(2, Strategy::Ring);
  const RunResult plain = run(2, o, 3);
  o.model.checkpoint_blocks = true;
  const RunResult ckpt = run(2, o, 3);
  EXPECT_EQ(plain.losses, ckpt.losses);  // the recomputation repeats the same float operations
  for (size_t i = 0; i < plain.params.size(); ++i) EXPECT_TRUE(plain.params[i].equal(ckpt.params[i])) << i;
}

// Stopped after step 3 and resumed; over a small data set the run also crosses epochs (the
// sampler restarts in a new order), for DD and for concat-and-chunk.
class TrainResume : public ::testing::TestWithParam<SamplerKind> {};

TEST_P(TrainResume, ResumeReproducesLossesBitwise) {
  TrainOptions o = tiny_options(2, Strategy::Ring);
  o.sampler = GetParam();
  expect_resume_bitwise(o, 2);
}

INSTANTIATE_TEST_SUITE_P(Samplers, TrainResume,
                         ::testing::Values(SamplerKind::DD, SamplerKind::ConcatChunk, SamplerKind::ConcatChunkDocMask),
                         [](const auto& info) { return std::string(to_string(info.param)); });

void expect_refused(const std::string& path, const TrainOptions& o, const std::string& needle) {
  try {
    local::run_ranks(1, [&](Communicator& comm) {
      Trainer t(comm.shared_from_this(), task_source(tiny_recall_task()), o);
      t.load(path);
    });
    ADD_FAILURE() << "loading " << path << " did not throw (expected '" << needle << "')";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TrainCheckpoint, DamagedOrMismatchedIsRefused) {
  const std::string dir = temp_dir(), good = data::files::join(dir, "good.lhc");
  const TrainOptions o = tiny_options(1, Strategy::Ring);
  run(1, o, 1, [&](Trainer& t, int) { t.save(good); });
  std::string bytes;
  {
    std::ifstream f(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string p = data::files::join(dir, name);
    std::ofstream(p, std::ios::binary) << content;
    return p;
  };
  expect_refused(write("truncated.lhc", bytes.substr(0, bytes.size() / 2)), o, "truncated");
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  expect_refused(write("corrupt.lhc", flipped), o, "corrupt (checksum mismatch)");
  expect_refused(write("other.lhc", "hello, not a checkpoint at all"), o, "not a longhaul checkpoint");
  expect_refused(data::files::join(dir, "missing.lhc"), o, "cannot open");
  TrainOptions wider = o;
  wider.model.dim = 48;
  expect_refused(good, wider, "model shape differs");
  TrainOptions longer = o;
  longer.model.rope_theta = 500000;
  expect_refused(good, longer, "rotary base (--rope-theta) differs");
  // A failed write leaves the previous checkpoint in place: nothing is replaced until complete.
  CheckpointFile bad;
  bad.tensors.emplace_back("x", at::zeros({2}, at::kInt));  // int32: not storable
  EXPECT_THROW(write_checkpoint(good, bad), InvalidArgument);
  EXPECT_NO_THROW(read_checkpoint(good));
  data::files::remove_tree(dir);
}

// A file whose records are malformed but whose header and checksum are right (found by the
// checkpoint fuzz target): refused by name before anything is allocated, never a c10::Error or
// a request for terabytes.
TEST(TrainCheckpoint, MalformedRecordsUnderAValidChecksumAreRefusedByName) {
  const std::string dir = temp_dir();
  auto file_with = [&](const std::string& name, const std::string& records) {
    std::string out = "LHCKPT01";
    const uint64_t total = 16 + records.size() + 8;
    out.append(reinterpret_cast<const char*>(&total), 8);
    out += records;
    uint64_t h = 1469598103934665603ULL;  // FNV-1a of everything before the hash
    for (unsigned char c : out) h = (h ^ c) * 1099511628211ULL;
    out.append(reinterpret_cast<const char*>(&h), 8);
    const std::string p = data::files::join(dir, name);
    std::ofstream(p, std::ios::binary) << out;
    return p;
  };
  auto tensor_record = [](uint8_t dtype, std::vector<int64_t> sizes, uint64_t bytes) {
    std::string r;
    auto put = [&](const auto& v) { r.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(uint8_t(2));
    put(uint32_t(1));
    r += "w";
    put(dtype);
    put(uint32_t(sizes.size()));
    for (int64_t s : sizes) put(s);
    put(bytes);
    return r;
  };
  auto expect = [&](const std::string& path, const std::string& needle) {
    try {
      read_checkpoint(path);
      ADD_FAILURE() << path << " was read (expected '" << needle << "')";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  expect(file_with("dtype.lhc", tensor_record(9, {2}, 8)), "unknown dtype code 9");
  expect(file_with("negative.lhc", tensor_record(0, {-3}, 0)), "has a size -3");
  expect(file_with("huge.lhc", tensor_record(0, {int64_t(1) << 40, int64_t(1) << 40}, 0)), "bytes for sizes");
  // No elements, but sizes whose strides overflow (ATen would throw its own error): found by the fuzz target.
  expect(file_with("strides.lhc", tensor_record(0, {0, int64_t(1) << 40, int64_t(1) << 40}, 0)), "bytes for sizes");
  expect(file_with("missing_data.lhc", tensor_record(0, {int64_t(1) << 30}, uint64_t(4) << 30)), "malformed record");
  std::string ndim = tensor_record(0, {}, 0);
  std::memcpy(&ndim[1 + 4 + 1 + 1], "\xff\xff\xff\xff", 4);  // 4 billion dimensions, no bytes for them
  expect(file_with("ndim.lhc", ndim), "malformed record");
  expect(file_with("kind.lhc", std::string("\x07\x00\x00\x00\x00", 5)), "unknown record kind 7");
  data::files::remove_tree(dir);
}

// Found by the checkpoint fuzz target under UBSan: an empty tensor (no data pointer) was copied
// with memcpy(nullptr, ..., 0). Empty tensors round-trip.
TEST(TrainCheckpoint, EmptyTensorsRoundTrip) {
  const std::string dir = temp_dir(), path = data::files::join(dir, "empty.lhc");
  CheckpointFile c;
  c.strings["note"] = "";
  c.tensors.emplace_back("none", at::zeros({0}, at::kFloat));
  c.tensors.emplace_back("rows", at::zeros({3, 0}, at::kLong));
  write_checkpoint(path, c);
  const CheckpointFile back = read_checkpoint(path);
  EXPECT_EQ(back.string("note"), "");
  EXPECT_EQ(back.tensor("none").sizes(), c10::IntArrayRef({0}));
  EXPECT_EQ(back.tensor("rows").sizes(), c10::IntArrayRef({3, 0}));
  EXPECT_EQ(back.tensor("rows").scalar_type(), at::kLong);
  data::files::remove_tree(dir);
}


// Two CP ranks train one step, then `inject` (on each rank, after the first step, before the
// second) makes the second step non-finite: by default it stops with a NumericalError saying
// `stop_says` on every rank; with skip_nonfinite it is dropped. Either way no parameter moves.
void check_nonfinite_step(const std::function<void(Communicator&, Trainer&)>& inject, const std::string& stop_says,
                          bool loss_finite) {
  for (bool skip : {false, true}) {
    TrainOptions o = tiny_options(2, Strategy::Ring);
    o.optim.skip_nonfinite = skip;
    std::vector<std::string> errors(2);
    std::vector<int> skipped(2, 0), unchanged(2, 0);
    local::run_ranks(2, [&](Communicator& comm) {
      Trainer t(comm.shared_from_this(), task_source(tiny_recall_task()), o);
      t.step();
      inject(comm, t);
      auto params = t.model().ordered_parameters();
      std::vector<at::Tensor> before;
      for (const auto& [name, p] : params) before.push_back(p.detach().clone());
      try {
        const StepStats s = t.step();
        skipped[comm.rank()] = s.skipped && std::isfinite(s.loss) == loss_finite;
      } catch (const NumericalError& e) {
        errors[comm.rank()] = e.what();
      }
      bool same = true;
      for (size_t i = 0; i < params.size(); ++i)  // NaN equals NaN here: an injected one stays
        same = same && at::allclose(params[i].second.detach(), before[i], 0.0, 0.0, /*equal_nan=*/true);
      unchanged[comm.rank()] = same;
    });
    for (int r = 0; r < 2; ++r) {
      EXPECT_TRUE(unchanged[r]) << "rank " << r << (skip ? " (skip)" : " (stop)") << ": a parameter moved";
      if (skip) {
        EXPECT_TRUE(skipped[r]) << "rank " << r;
        EXPECT_TRUE(errors[r].empty()) << errors[r];
      } else {
        EXPECT_NE(errors[r].find(stop_says), std::string::npos) << "rank " << r << ": " << errors[r];
      }
    }
  }
}

// A NaN in the model makes the loss NaN on every rank (it is the world's sum): the step is never
// applied.
TEST(TrainNonFinite, ALossThatIsNotFiniteStopsOrIsSkipped) {
  check_nonfinite_step([](Communicator&, Trainer& t) {
    at::NoGradGuard no_grad;
    t.model().ordered_parameters().back().second.view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  }, "step 2: the loss is NaN", /*loss_finite=*/false);
}

// A finite loss whose gradient is not finite (here a hook on rank 0 alone makes one gradient NaN;
// an overflow in the backward or a huge learning rate does it in practice): the update would make
// every parameter NaN, so it is never applied, on every rank; the error names the gradient norm.
TEST(TrainNonFinite, AFiniteLossWithANonFiniteGradientStopsOrIsSkipped) {
  check_nonfinite_step([](Communicator& comm, Trainer& t) {
    if (comm.rank() != 0) return;
    t.model().ordered_parameters().front().second.register_hook(
        [](const at::Tensor& g) { return at::full_like(g, std::numeric_limits<float>::quiet_NaN()); });
  }, "step 2: the gradient norm is NaN (the loss, ", /*loss_finite=*/true);
}

}  // namespace
}  // namespace longhaul::train

// The exact chunked math path (attention/chunked_math.h: the CUDA backend's fallback, device
// agnostic) on CPU tensors, so the GPU's exact path is checked on every machine:
// - every mask family in float32 and float64 with GQA and an odd length, on a self block, zigzag
//   and striped shard pairs and keys out of order, whole and cut into many chunks (down to one row
//   a chunk), forward and the row-sum backward against the float64 reference;
// - its chunk plan: each row that sees a key in exactly one chunk, every visible pair inside its
//   chunk, the buffer budget, and, at real sizes, the computed pairs within max_waste of the
//   masked area (a change that computes whole rows of keys again fails here).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "attention/chunked_math.h"
#include "core/errors.h"
#include "tests/common/relative_error.h"

namespace longhaul {
namespace {

using chunked_math::Chunk;
using chunked_math::ChunkLimits;

using testing::rel_err;

std::vector<int64_t> range(int64_t b, int64_t e, int64_t step = 1) {
  std::vector<int64_t> r;
  for (int64_t i = b; i < e; i += step) r.push_back(i);
  return r;
}
std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct View {
  std::string name;
  BlockView view;
};

// Blocks of a 301-token sequence as the strategies compute them.
std::vector<View> views() {
  const int64_t t = 301;
  auto pos = [](const std::vector<int64_t>& x) { return at::tensor(x, at::kLong); };
  const auto zz0 = concat(range(0, 38), range(263, t)), zz1 = concat(range(38, 76), range(225, 263));
  at::manual_seed(3);
  const at::Tensor shuffled = at::randperm(t, at::kLong).narrow(0, 0, 150);
  return {{"self", BlockView::self(t)},
          {"zigzag q1 k0", {pos(zz1), pos(zz0)}},
          {"zigzag q0 k1", {pos(zz0), pos(zz1)}},
          {"striped q2 k1", {pos(range(2, t, 3)), pos(range(1, t, 3))}},
          {"keys out of order", {pos(range(100, 250)), shuffled}}};
}

Mask family(const std::string& name, int64_t t) {
  const std::vector<int64_t> docs{0, 37, 41, 120, 121, 250, t};
  const int64_t param = name == "prefix_lm_causal" ? 90 : name == "prefix_lm_document" ? 9
                        : name == "block_causal_document" ? 16 : 23;
  return masks::make(name, t, masks::uses_documents(name) ? docs : std::vector<int64_t>{}, param, 7);
}

// Default limits (one chunk at these sizes), many chunks, and a row a chunk where windows meet.
std::vector<ChunkLimits> limit_sets() { return {ChunkLimits{}, {1 << 14, 0, 1.5}, {2048, 0, 1.0}}; }

TEST(ChunkedMath, EveryFamilyAndViewAgainstTheReference) {
  const int64_t h = 4, hkv = 2, d = 16;
  for (const auto& name : masks::family_names()) {
    const Mask mask = family(name, 301);
    for (const View& v : views()) {
      const int64_t tq = v.view.q_pos.numel(), tk = v.view.k_pos.numel();
      at::manual_seed(11);
      const at::Tensor q = at::randn({tq, h, d}, at::kDouble), k = at::randn({tk, hkv, d}, at::kDouble),
                       val = at::randn({tk, hkv, d}, at::kDouble), dout = at::randn({tq, h, d}, at::kDouble);
      const double scale = 0.3;
      const AttentionOutput ref = attention_forward(q, k, val, v.view, mask, scale, AttentionBackend::Reference);
      const AttentionGrads gref =
          attention_backward(dout, q, k, val, ref.out, ref.lse, v.view, mask, scale, AttentionBackend::Reference);
      const at::Tensor row_sums = attention_row_sums(dout, ref.out);
      for (const auto dt : {at::kFloat, at::kDouble}) {
        const double tol = dt == at::kDouble ? 1e-10 : 2e-5;
        for (const ChunkLimits& lim : limit_sets()) {
          SCOPED_TRACE(detail::str_cat(name, ", ", v.name, ", ", c10::toString(dt), ", budget ", lim.score_budget,
                                       " B, waste ", lim.max_waste));
          const AttentionOutput got =
              chunked_math::forward(q.to(dt), k.to(dt), val.to(dt), v.view, mask, scale, lim);
          EXPECT_EQ(got.out.scalar_type(), dt);
          EXPECT_LE(rel_err(got.out, ref.out), tol);
          EXPECT_LE(rel_err(got.lse, ref.lse), tol);
          const AttentionGrads g = chunked_math::backward(dout.to(dt), q.to(dt), k.to(dt), val.to(dt),
                                                          row_sums.to(dt), ref.lse.to(dt), v.view, mask, scale, lim);
          EXPECT_LE(rel_err(g.dq, gref.dq), tol);
          EXPECT_LE(rel_err(g.dk, gref.dk), tol);
          EXPECT_LE(rel_err(g.dv, gref.dv), tol);
        }
      }
    }
  }
}

// Rows that see nothing (keys all after them under a causal mask) keep out 0 and lse −∞, and get
// no gradient, even with a non-finite lse handed to the backward.
TEST(ChunkedMath, RowsThatSeeNoKey) {
  const BlockView view{at::arange(0, 20, at::kLong), at::arange(10, 40, at::kLong)};
  at::manual_seed(5);
  const at::Tensor q = at::randn({20, 2, 8}), k = at::randn({30, 2, 8}), v = at::randn({30, 2, 8});
  const AttentionOutput got = chunked_math::forward(q, k, v, view, Mask::causal(), 0.5, {2048, 0, 1.0});
  EXPECT_TRUE(at::equal(got.out.narrow(0, 0, 10), at::zeros({10, 2, 8})));
  EXPECT_TRUE(at::isneginf(got.lse.narrow(1, 0, 10)).all().item<bool>());
  EXPECT_TRUE(at::isfinite(got.lse.narrow(1, 10, 10)).all().item<bool>());
  const at::Tensor dout = at::randn({20, 2, 8});
  const AttentionGrads g = chunked_math::backward(dout, q, k, v, attention_row_sums(dout, got.out), got.lse, view,
                                                  Mask::causal(), 0.5);
  EXPECT_TRUE(at::equal(g.dq.narrow(0, 0, 10), at::zeros({10, 2, 8})));
  EXPECT_FALSE(at::isnan(g.dk).any().item<bool>());
}

// Every row that sees a key lies in exactly one chunk, every pair it sees lies in its chunk's
// key rows, all_visible chunks are dense, and a chunk of more than one row keeps the budget.
void check_plan(const std::vector<Chunk>& chunks, const BlockView& view, const Mask& mask, int64_t heads,
                at::ScalarType acc, const ChunkLimits& lim) {
  const at::Tensor dense = mask.dense(view.q_pos, view.k_pos);  // [Tq, Tk]
  const int64_t tq = dense.size(0);
  std::vector<int> owner(static_cast<size_t>(tq), -1);
  int64_t next = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    ASSERT_GE(c.r0, next) << "chunk " << i << " overlaps or goes back";
    ASSERT_GE(c.rows, 1);
    ASSERT_LE(c.r0 + c.rows, tq);
    ASSERT_LT(c.k0, c.k1);
    next = c.r0 + c.rows;
    for (int64_t r = c.r0; r < next; ++r) owner[static_cast<size_t>(r)] = static_cast<int>(i);
    const at::Tensor rows = dense.narrow(0, c.r0, c.rows);
    EXPECT_FALSE(rows.narrow(1, 0, c.k0).any().item<bool>()) << "chunk " << i << " misses keys before k0";
    EXPECT_FALSE(rows.narrow(1, c.k1, dense.size(1) - c.k1).any().item<bool>()) << "chunk " << i << " misses keys";
    if (c.all_visible) EXPECT_TRUE(rows.narrow(1, c.k0, c.k1 - c.k0).all().item<bool>()) << "chunk " << i;
    if (c.rows > 1)
      EXPECT_LE(c.rows * (c.k1 - c.k0) * heads * int64_t(c10::elementSize(acc)), lim.score_budget) << "chunk " << i;
  }
  const at::Tensor sees = dense.any(1);
  for (int64_t r = 0; r < tq; ++r)
    if (sees[r].item<bool>()) EXPECT_GE(owner[static_cast<size_t>(r)], 0) << "row " << r << " is in no chunk";
}

TEST(ChunkedMath, ChunksHoldEveryVisiblePairOnce) {
  for (const auto& name : masks::family_names())
    for (const View& v : views())
      for (const ChunkLimits& lim : limit_sets())
        for (const auto acc : {at::kFloat, at::kDouble}) {
          SCOPED_TRACE(detail::str_cat(name, ", ", v.name, ", budget ", lim.score_budget));
          const Mask mask = family(name, 301);
          check_plan(chunked_math::plan_chunks(v.view, mask, 4, acc, lim), v.view, mask, 4, acc, lim);
        }
}

// At the sizes the GPU runs (H = 16, float32, default limits) the chunks compute at most
// max_waste times the masked area, plus what chunks under small_buffer may waste, in few chunks
// (the budget's: a 256 MiB buffer holds 128 rows of 32K keys).
TEST(ChunkedMath, ComputedPairsStayNearTheMaskedAreaAtRealSizes) {
  const int64_t heads = 16;
  struct Row {
    std::string what;
    BlockView view;
    Mask mask;
    int64_t max_chunks;
  };
  const int64_t t = 16384, big = 131072, shard = big / 8;  // zigzag P = 4: two chunks of T/8 a rank
  auto zigzag = [&](int r) {
    return at::cat({at::arange(r * shard, (r + 1) * shard, at::kLong),
                    at::arange(big - (r + 1) * shard, big - r * shard, at::kLong)});
  };
  std::vector<int64_t> docs{0};
  for (int64_t len = 1500; docs.back() < t; len = len * 5 % 4093 + 700) docs.push_back(std::min(t, docs.back() + len));
  const std::vector<Row> rows{
      {"causal 16K", BlockView::self(t), Mask::causal(), 64},
      {"causal window 1024, 16K", BlockView::self(t), Mask::causal().window(1023, 0), 64},
      {"sliding window (512, 512), 16K", BlockView::self(t), masks::sliding_window(t, 512), 64},
      {"causal documents, 16K", BlockView::self(t), masks::causal_document(docs), 128},
      {"causal window 1024, zigzag 128K q1 k0", {zigzag(1), zigzag(0)}, Mask::causal().window(1023, 0), 64},
      {"causal, zigzag 128K q0 k1", {zigzag(0), zigzag(1)}, Mask::causal(), 128},
  };
  for (const Row& r : rows) {
    const std::vector<Chunk> chunks = chunked_math::plan_chunks(r.view, r.mask, heads, at::kFloat);
    double computed = 0;
    for (const Chunk& c : chunks) computed += double(c.rows) * double(c.k1 - c.k0);
    // Masked area of the block: the pairs the positions see (positions ascend in both lists).
    double area = 0;
    const at::Tensor qp = r.view.q_pos, kp = r.view.k_pos;
    const at::Tensor iv = r.mask.key_intervals(qp);
    const at::Tensor sorted_k = std::get<0>(kp.sort());
    for (int64_t m = 0; m < iv.size(1); ++m) {
      const at::Tensor lo = at::searchsorted(sorted_k, iv.select(1, m).select(1, 0).contiguous());
      const at::Tensor hi = at::searchsorted(sorted_k, iv.select(1, m).select(1, 1).contiguous(), false, true);
      area += (hi - lo).clamp_min(0).sum().item<double>();
    }
    const double ratio = computed / area;
    std::cout << "[ chunks   ] " << r.what << ": " << chunks.size() << " chunks, computed / masked area "
              << ratio << "\n";
    const ChunkLimits lim;
    EXPECT_LE(computed, lim.max_waste * area + double(chunks.size()) * double(lim.small_buffer / heads)) << r.what;
    EXPECT_LE(static_cast<int64_t>(chunks.size()), r.max_chunks) << r.what;
  }
}

}  // namespace
}  // namespace longhaul

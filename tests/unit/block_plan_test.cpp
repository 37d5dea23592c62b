// The CUDA path's block planner (plain C++, run here): for every mask family and the block shapes
// strategies produce, the varlen pieces with their window offsets cover each visible (query, key)
// pair exactly once and no hidden one, read with FlashAttention's bottom-right window rule.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "attention/cuda/block_plan.h"
#include "attention/mask.h"

namespace longhaul {
namespace {

// Key b of a piece is visible from its row a (bottom-right aligned, -1 = unbounded).
bool piece_sees(const cuda::Piece& p, int64_t a, int64_t b) {
  const int64_t diag = a + p.n - p.m;
  return (p.right == -1 || b <= diag + p.right) && (p.left == -1 || b >= diag - p.left);
}

void expect_exact_cover(const Mask& mask, const std::vector<int64_t>& qp, const std::vector<int64_t>& kp,
                        const std::string& what) {
  const auto tq = static_cast<int64_t>(qp.size()), tk = static_cast<int64_t>(kp.size());
  const cuda::BlockPlan plan = cuda::plan_block(mask.spec(), qp.data(), tq, kp.data(), tk);
  ASSERT_FALSE(plan.fragmented) << what;
  std::vector<int> cover(tq * tk, 0);
  for (const auto& g : plan.groups) {
    ASSERT_EQ(g.layer_begin.back(), g.pieces.size()) << what;
    for (const auto& p : g.pieces) {
      ASSERT_TRUE(p.left == g.left && p.right == g.right) << what;
      for (int64_t a = 0; a < p.m; ++a)
        for (int64_t b = 0; b < p.n; ++b)
          if (piece_sees(p, a, b)) ++cover[(p.q_row + a) * tk + p.k_row + b];
    }
  }
  for (int64_t i = 0; i < tq; ++i)
    for (int64_t j = 0; j < tk; ++j)
      ASSERT_EQ(cover[i * tk + j], mask.visible(qp[i], kp[j]) ? 1 : 0)
          << what << ": query position " << qp[i] << ", key position " << kp[j];
}

std::vector<int64_t> range(int64_t b, int64_t e) {
  std::vector<int64_t> v;
  for (int64_t x = b; x < e; ++x) v.push_back(x);
  return v;
}

TEST(BlockPlan, PiecesCoverEveryFamilyExactly) {
  const int64_t t = 300;
  const std::vector<int64_t> cu{0, 37, 41, 120, 121, 250, 300};
  std::vector<int64_t> zigzag0 = range(0, 38), zigzag1 = range(38, 75);  // rank 0 and 1 of a 4-rank zigzag
  for (int64_t x : range(262, 300)) zigzag0.push_back(x);
  for (int64_t x : range(225, 262)) zigzag1.push_back(x);
  for (const auto& name : masks::family_names()) {
    const int64_t param = name == "prefix_lm_causal" ? 90 : name == "prefix_lm_document" ? 9
                          : name == "block_causal_document" ? 16 : 23;
    const Mask m = masks::make(name, t, masks::uses_documents(name) ? cu : std::vector<int64_t>{}, param, 7);
    expect_exact_cover(m, range(0, t), range(0, t), name + " self");
    expect_exact_cover(m, range(150, 227), range(40, 150), name + " ring step, q after k");
    expect_exact_cover(m, range(40, 150), range(150, 227), name + " ring step, q before k");
    expect_exact_cover(m, zigzag1, zigzag0, name + " zigzag shards");
    expect_exact_cover(m, zigzag0, zigzag0, name + " zigzag self");
  }
  // The predicate shorthands (unbounded) too.
  expect_exact_cover(Mask::causal().window(11, 3), range(0, 200), range(0, 200), "causal window");
  expect_exact_cover(Mask::causal().documents(cu).window(9, 0), zigzag1, zigzag0, "documents window");
}

// A shard of many short documents is one fused call per mask group (it was once sent to the exact
// math path past 272 documents); past what one varlen call takes, consecutive calls; a striped
// shard (runs of one row) stays fragmented.
TEST(BlockPlan, ManyShortDocumentsStayFusedAndSplitPerCall) {
  auto plan_documents = [](int64_t docs, int64_t len) {
    std::vector<int64_t> cu{0};
    for (int64_t i = 0; i < docs; ++i) cu.push_back(cu.back() + len);
    const std::vector<int64_t> pos = range(0, docs * len);
    const auto t = static_cast<int64_t>(pos.size());
    return cuda::plan_block(Mask::causal().documents(cu).spec(), pos.data(), t, pos.data(), t);
  };
  const cuda::BlockPlan two_thousand = plan_documents(2000, 32);
  ASSERT_FALSE(two_thousand.fragmented);
  ASSERT_EQ(two_thousand.groups.size(), 1u);
  EXPECT_EQ(two_thousand.groups[0].pieces.size(), 2000u);
  EXPECT_EQ(two_thousand.groups[0].layer_begin, (std::vector<size_t>{0, 2000}));

  const int64_t docs = cuda::kMaxPiecesPerCall + 4465;
  const cuda::BlockPlan split = plan_documents(docs, 4);
  ASSERT_FALSE(split.fragmented);
  ASSERT_EQ(split.groups.size(), 2u);
  int64_t next_row = 0;
  for (const auto& g : split.groups) {
    ASSERT_LE(static_cast<int64_t>(g.pieces.size()), cuda::kMaxPiecesPerCall);
    EXPECT_EQ(g.layer_begin, (std::vector<size_t>{0, g.pieces.size()}));
    EXPECT_TRUE(g.left == -1 && g.right == 0);
    for (const auto& p : g.pieces) {
      ASSERT_EQ(p.q_row, next_row);
      ASSERT_TRUE(p.m == 4 && p.n == 4 && p.k_row == p.q_row);
      next_row += 4;
    }
  }
  EXPECT_EQ(next_row, docs * 4);

  std::vector<int64_t> striped;
  for (int64_t x = 1; x < 4000; x += 4) striped.push_back(x);
  const auto ts = static_cast<int64_t>(striped.size());
  EXPECT_TRUE(cuda::plan_block(Mask::causal().spec(), striped.data(), ts, striped.data(), ts).fragmented);
}

}  // namespace
}  // namespace longhaul

// ShardPlan: every layout covers each token exactly once, round-trips, balances causal work
// (zigzag), keeps short documents whole, and reports positions inside documents.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <iostream>

#include "parallel/shard_plan.h"
#include "core/errors.h"

namespace longhaul {
namespace {

std::vector<ShardPlan> plans(int64_t T, std::optional<at::Tensor> cu, Layout l, int P) {
  std::vector<ShardPlan> out;
  for (int r = 0; r < P; ++r) out.emplace_back(T, cu, l, P, r, 16);
  return out;
}

TEST(ShardPlan, EveryLayoutCoversEachTokenOnceAndRoundTrips) {
  for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped}) {
    for (int P : {1, 2, 3, 4, 8}) {
      for (int64_t T : {int64_t(0), int64_t(5), int64_t(1000), int64_t(1001)}) {
        for (bool docs : {false, true}) {
          std::optional<at::Tensor> cu;
          if (docs && T > 0) cu = at::tensor(std::vector<int64_t>{0, T / 3, T / 3 + 7 < T ? T / 3 + 7 : T, T}, at::kLong);
          auto ps = plans(T, cu, l, P);
          at::Tensor global = at::arange(T * 3, at::kDouble).view({T, 3});
          std::vector<at::Tensor> shards;
          std::vector<int> seen(T, 0);
          for (int r = 0; r < P; ++r) {
            at::Tensor pos = ps[r].positions();
            EXPECT_TRUE(pos.numel() < 2 || (pos.slice(0, 1) > pos.slice(0, 0, -1)).all().item<bool>())
                << "rows ascend";
            for (int64_t i = 0; i < pos.numel(); ++i) ++seen[pos[i].item<int64_t>()];
            shards.push_back(ps[r].shard(global));
            EXPECT_EQ(shards.back().size(0), ps[r].local_rows());
          }
          for (int64_t t = 0; t < T; ++t) EXPECT_EQ(seen[t], 1) << to_string(l) << " P=" << P << " t=" << t;
          EXPECT_TRUE(at::equal(ps[0].unshard(shards), global)) << to_string(l) << " P=" << P << " T=" << T;
        }
      }
    }
  }
}

TEST(ShardPlan, ZigzagHoldsChunksRAnd2PMinus1MinusR) {
  ShardPlan p(16, std::nullopt, Layout::Zigzag, 4, 1);
  EXPECT_TRUE(at::equal(p.positions(), at::tensor(std::vector<int64_t>{2, 3, 12, 13}, at::kLong)));
  ShardPlan s(10, std::nullopt, Layout::Striped, 3, 2);
  EXPECT_TRUE(at::equal(s.positions(), at::tensor(std::vector<int64_t>{2, 5, 8}, at::kLong)));
}

TEST(ShardPlan, DocumentsZigzagPerDocumentShortOnesWhole) {
  // Documents of 256 (cut: 2P·min_chunk = 128 <= 256) and 40 (kept whole) tokens, P=4, min_chunk 16.
  at::Tensor cu = at::tensor(std::vector<int64_t>{0, 256, 296}, at::kLong);
  auto ps = plans(296, cu, Layout::Zigzag, 4);
  int holders_of_short = 0;
  for (int r = 0; r < 4; ++r) {
    at::Tensor pos = ps[r].positions();
    const int64_t in_long = (pos < 256).sum().item<int64_t>();
    EXPECT_EQ(in_long, 64);  // two chunks of 32 from the long document
    if ((pos >= 256).any().item<bool>()) {
      ++holders_of_short;
      EXPECT_EQ((pos >= 256).sum().item<int64_t>(), 40);
    }
    // Positions inside documents restart at 0 and local_cu_seqlens splits at documents.
    at::Tensor dp = ps[r].doc_positions();
    EXPECT_TRUE(at::equal(dp, at::where(pos >= 256, pos - 256, pos)));
    EXPECT_EQ(ps[r].local_cu_seqlens().size(0), (pos >= 256).any().item<bool>() ? 3 : 2);
  }
  EXPECT_EQ(holders_of_short, 1);
}

TEST(ShardPlan, BadInputIsAClearError) {
  EXPECT_THROW(ShardPlan(10, std::nullopt, Layout::Zigzag, 2, 2), InvalidArgument);
  EXPECT_THROW(ShardPlan(10, at::tensor(std::vector<int64_t>{0, 4, 9}, at::kLong), Layout::Zigzag, 2, 0),
               InvalidArgument);  // ends at 9, not T
  ShardPlan p(10, std::nullopt, Layout::Contiguous, 2, 0);
  EXPECT_THROW(p.shard(at::zeros({9, 2})), InvalidArgument);
  EXPECT_THROW(layout_from_string("spiral"), InvalidArgument);
}

// Balanced: every rank the same number of chunks, and the largest rank area within 5% of the
// mean for every family at T = 16384 on 2 and 4 ranks (zigzag printed alongside for the note).
TEST(ShardPlan, BalancedLayoutEvensTheMaskedAreaOfEveryFamily) {
  const int64_t T = 16384;
  std::vector<int64_t> cu{0};  // documents of 300 .. 4000 tokens
  for (int64_t len = 1111; cu.back() < T; len = (len * 7 + 389) % 3700 + 300) cu.push_back(std::min(T, cu.back() + len));
  for (const auto& name : masks::family_names()) {
    const int64_t param = name == "prefix_lm_causal" ? T / 4 : name == "prefix_lm_document" ? 256
                          : name == "block_causal_document" ? 1024 : 1024;
    const Mask m = masks::make(name, T, masks::uses_documents(name) ? cu : std::vector<int64_t>{}, param, 256);
    for (int p : {2, 4}) {
      const ShardPlan b = ShardPlan::for_mask(T, m, Layout::Balanced, p, 0);
      const ShardPlan z = ShardPlan::for_mask(T, m, Layout::Zigzag, p, 0);
      int64_t rows = 0;
      for (int r = 0; r < p; ++r) {
        EXPECT_NEAR(double(b.local_rows(r)), double(T) / p, 8.0) << name << " P=" << p << " rank " << r;
        rows += b.local_rows(r);
      }
      EXPECT_EQ(rows, T);
      EXPECT_LE(b.area_imbalance(m), 1.05) << name << " P=" << p << " (zigzag: " << z.area_imbalance(m) << ")";
      std::cout << "imbalance " << name << " P=" << p << ": zigzag " << z.area_imbalance(m) << ", balanced "
                << b.area_imbalance(m) << "\n";
    }
  }
  // The coarsest balanced cut: a symmetric window keeps one range per rank, causal the zigzag pairs.
  const ShardPlan w = ShardPlan::for_mask(T, masks::sliding_window(T, 512), Layout::Balanced, 2, 1);
  EXPECT_TRUE(at::equal(w.positions(), at::arange(T / 2, T, at::kLong)));
  const ShardPlan c = ShardPlan::for_mask(T, masks::causal(T), Layout::Balanced, 4, 1);
  EXPECT_TRUE(at::equal(c.positions(), ShardPlan(T, std::nullopt, Layout::Zigzag, 4, 1).positions()));
  EXPECT_THROW(ShardPlan(100, std::nullopt, Layout::Balanced, 2, 0), InvalidArgument);
  EXPECT_THROW(ShardPlan::for_mask(100, masks::causal(90), Layout::Balanced, 2, 0), InvalidArgument);
}

}  // namespace
}  // namespace longhaul

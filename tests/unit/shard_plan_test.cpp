// ShardPlan: every layout covers each token exactly once, round-trips, balances causal work
// (zigzag), keeps short documents whole, and reports positions inside documents.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <iostream>
#include <string>

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

void expect_refused(const std::function<void()>& f, const std::string& says) {
  try {
    f();
    ADD_FAILURE() << "accepted; expected: " << says;
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
  }
}

TEST(ShardPlan, BadInputIsAClearError) {
  EXPECT_THROW(ShardPlan(10, std::nullopt, Layout::Zigzag, 2, 2), InvalidArgument);
  EXPECT_THROW(ShardPlan(10, at::tensor(std::vector<int64_t>{0, 4, 9}, at::kLong), Layout::Zigzag, 2, 0),
               InvalidArgument);  // ends at 9, not T
  ShardPlan p(10, std::nullopt, Layout::Contiguous, 2, 0);
  EXPECT_THROW(p.shard(at::zeros({9, 2})), InvalidArgument);
  EXPECT_THROW(layout_from_string("spiral"), InvalidArgument);
  EXPECT_THROW(ShardPlan(10, std::nullopt, static_cast<Layout>(9), 2, 0), InvalidArgument);
  // Accessors take ranks in range only (rank_offset also P: the end).
  EXPECT_THROW(p.local_rows(2), InvalidArgument);
  EXPECT_THROW(p.rows_of(-1), InvalidArgument);
  EXPECT_THROW(p.rank_offset(3), InvalidArgument);
  EXPECT_EQ(p.rank_offset(2), 10);
  // unshard of shards that differ in dtype, trailing shape or definedness: named, not ATen's error.
  expect_refused([&] { p.unshard({at::zeros({5, 2}), at::zeros({5, 2}, at::kDouble)}); },
                 "the shard of rank 1 is Double [5, 2] on cpu, rank 0's Float [5, 2] on cpu");
  expect_refused([&] { p.unshard({at::zeros({5, 2}), at::zeros({5, 3})}); }, "same dtype, device and trailing sizes");
  expect_refused([&] { p.unshard({at::zeros({5, 2}), at::Tensor()}); }, "the shard of rank 1 is undefined");
}


// from_rows: the rows must partition [0, T) (in any order); the documents end at T.
TEST(ShardPlan, FromRowsChecksItsRowsAndDocuments) {
  using Rows = std::vector<std::vector<int64_t>>;
  const ShardPlan good = ShardPlan::from_rows(6, {}, Layout::Zigzag, Rows{{0, 5}, {1, 2, 3, 4}}, 1);
  EXPECT_EQ(good.cu_seqlens(), (std::vector<int64_t>{0, 6}));
  EXPECT_EQ(good.doc_positions().sizes(), at::IntArrayRef({4}));
  expect_refused([] { ShardPlan::from_rows(6, {}, Layout::Zigzag, Rows{{0, 0, 0}, {5, 5, 5}}, 0); },
                 "position 0 is given twice (again to rank 0)");
  EXPECT_NO_THROW(ShardPlan::from_rows(6, {}, Layout::Zigzag, Rows{{0, 1, 2}, {3, 5, 4}}, 0));  // any order
  expect_refused([] { ShardPlan::from_rows(6, {}, Layout::Zigzag, Rows{{0, 1, 2}, {2, 4, 5}}, 0); },
                 "position 2 is given twice (again to rank 1)");
  expect_refused([] { ShardPlan::from_rows(4, {}, Layout::Zigzag, Rows{{0, 1}, {2, 7}}, 0); },
                 "rank 1's row 1 is position 7, outside [0, T = 4)");
  expect_refused([] { ShardPlan::from_rows(4, {}, Layout::Zigzag, Rows{{0, 1}, {3}}, 0); },
                 "position 2 is on no rank");
  expect_refused([] { ShardPlan::from_rows(4, {0, 3}, Layout::Zigzag, Rows{{0, 1}, {2, 3}}, 0); },
                 "cu_seqlens ends at 3 but T = 4");
  expect_refused([] { ShardPlan::from_rows(4, {7, 2}, Layout::Zigzag, Rows{{0, 1}, {2, 3}}, 0); }, "");
  expect_refused([] { ShardPlan::from_rows(4, {}, Layout::Zigzag, Rows{{0, 1}, {2, 3}}, 2); }, "rank 2 outside");
  expect_refused([] { ShardPlan::from_rows(4, {}, static_cast<Layout>(7), Rows{{0, 1}, {2, 3}}, 0); },
                 "layout 7 is not a Layout");
}

// The fingerprint (what ranks compare before a CP call) covers every rank's rows: plans with the
// same T, layout, P and documents but other rows differ.
TEST(ShardPlan, FingerprintCoversTheRows) {
  const at::Tensor docs = at::tensor(std::vector<int64_t>{0, 100, 200}, at::kLong);
  const ShardPlan a(200, docs, Layout::Zigzag, 2, 0, 64), b(200, docs, Layout::Zigzag, 2, 0, 1);
  ASSERT_NE(a.rows_of(0), b.rows_of(0));
  EXPECT_NE(a.fingerprint(), b.fingerprint());
  EXPECT_EQ(a.fingerprint(), ShardPlan(200, docs, Layout::Zigzag, 2, 1, 64).fingerprint());  // not the rank
  using Rows = std::vector<std::vector<int64_t>>;
  const ShardPlan swapped = ShardPlan::from_rows(4, {}, Layout::Zigzag, Rows{{2, 3}, {0, 1}}, 0);
  const ShardPlan straight = ShardPlan::from_rows(4, {}, Layout::Zigzag, Rows{{0, 1}, {2, 3}}, 0);
  EXPECT_NE(swapped.fingerprint(), straight.fingerprint());
}

// Balanced: every rank the same number of chunks, and the largest rank area within 5% of the
// mean for every family at T = 16384 on 2 and 4 ranks (zigzag printed alongside for the note).
TEST(ShardPlan, BalancedLayoutEvensTheMaskedAreaOfEveryFamily) {
  const int64_t T = 16384;
  std::vector<int64_t> cu{0};  // documents of 300 .. 4000 tokens
  for (int64_t len = 1111; cu.back() < T; len = (len * 7 + 389) % 3700 + 300) cu.push_back(std::min(T, cu.back() + len));
  for (const auto& name : masks::family_names()) {
    const int64_t param = name == "prefix_lm_causal" ? T / 4 : name == "prefix_lm_document" ? 256 : 1024;
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

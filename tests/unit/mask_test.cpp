// The general mask: slice arithmetic (classification, area, per-row intervals) against brute
// force on random slice lists; every long-context family against its definition written as a
// predicate; the predicate shorthands against their formula; bad input named.
#include <gtest/gtest.h>

#include <random>

#include "attention/mask.h"
#include "core/errors.h"
#include "tests/common/expect_error.h"

namespace longhaul {
namespace {

using testing::expect_error;

using Pred = std::function<bool(int64_t, int64_t)>;

// Random slices with disjoint visible pairs: each sits in its own cell of a grid over [0, t)²,
// with a random type and range inside the cell.
std::vector<MaskSlice> random_slices(std::mt19937_64& rng, int64_t t) {
  const int64_t cells = 4, cell = t / cells;
  std::vector<MaskSlice> out;
  for (int64_t a = 0; a < cells; ++a)
    for (int64_t b = 0; b < cells; ++b) {
      if (rng() % 3 == 0) continue;
      const int64_t q0 = a * cell + rng() % 3, q1 = (a + 1) * cell - rng() % 3;
      const int64_t k0 = b * cell + rng() % 3, k1 = (b + 1) * cell - rng() % 3;
      switch (rng() % 5) {
        case 0: out.push_back(MaskSlice::full(q0, q1, k0, k1)); break;
        case 1: out.push_back(MaskSlice::causal(q0, q1, k0, k1)); break;
        case 2: out.push_back(MaskSlice::inverse_causal(q0, q1, k0, k1)); break;
        case 3: out.push_back(MaskSlice::bi_causal(q0, q1, k0 - 0, k1)); break;
        default: {
          const int64_t lo = -static_cast<int64_t>(rng() % 9), hi = static_cast<int64_t>(rng() % 9);
          out.push_back(MaskSlice::band(q0, q1, k0, k1, lo + (k0 - q0), hi + (k0 - q0)));
        }
      }
    }
  return out;
}

bool brute_visible(const std::vector<MaskSlice>& s, int64_t i, int64_t j) {
  for (const auto& x : s)
    if (x.contains(i, j)) return true;
  return false;
}

TEST(Mask, SliceArithmeticMatchesBruteForce) {
  std::mt19937_64 rng(7);
  std::vector<PosInterval> iv;
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t t = 40 + static_cast<int64_t>(rng() % 30);
    const auto slices = random_slices(rng, t);
    const Mask m = Mask::from_slices(t, slices);
    for (int64_t i = 0; i < t; ++i) {
      // Per-row intervals and per-key intervals hold exactly the visible pairs.
      m.spec().keys_of(i, iv);
      for (int64_t j = 0; j < t; ++j) {
        bool in = false;
        for (const auto& x : iv) in = in || (x.lo <= j && j <= x.hi);
        ASSERT_EQ(in, brute_visible(slices, i, j)) << "trial " << trial << " keys_of(" << i << ") key " << j;
        ASSERT_EQ(m.visible(i, j), brute_visible(slices, i, j));
      }
      for (size_t u = 1; u < iv.size(); ++u) ASSERT_GT(iv[u].lo, iv[u - 1].hi + 1) << "sorted, disjoint, merged";
      m.spec().queries_of(i, iv);
      for (int64_t q = 0; q < t; ++q) {
        bool in = false;
        for (const auto& x : iv) in = in || (x.lo <= q && q <= x.hi);
        ASSERT_EQ(in, brute_visible(slices, q, i)) << "trial " << trial << " queries_of(" << i << ") query " << q;
      }
    }
    // Rectangles: area and classification.
    for (int r = 0; r < 60; ++r) {
      int64_t qa = rng() % t, qb = rng() % t, ka = rng() % t, kb = rng() % t;
      if (qa > qb) std::swap(qa, qb);
      if (ka > kb) std::swap(ka, kb);
      int64_t area = 0;
      for (int64_t i = qa; i <= qb; ++i)
        for (int64_t j = ka; j <= kb; ++j) area += brute_visible(slices, i, j);
      ASSERT_EQ(m.area(qa, qb + 1, ka, kb + 1), area) << "trial " << trial;
      const BlockClass want = area == 0 ? BlockClass::Empty
                              : area == (qb - qa + 1) * (kb - ka + 1) ? BlockClass::Full
                                                                      : BlockClass::Partial;
      ASSERT_EQ(m.classify({qa, qb}, {ka, kb}), want) << "trial " << trial;
    }
  }
}

// Each family against its definition, written as a predicate on (i, j).
TEST(Mask, FamiliesMatchTheirDefinitions) {
  const std::vector<int64_t> cu{0, 9, 20, 21, 37, 60, 61};
  const int64_t t = cu.back();
  auto doc = [&](int64_t p) { return std::upper_bound(cu.begin(), cu.end(), p) - cu.begin() - 1; };
  const int64_t n = static_cast<int64_t>(cu.size()) - 1, w = 5, prefix = 13, block = 4, g = 3;
  const std::vector<std::pair<Mask, Pred>> cases = {
      {masks::full(t), [](int64_t, int64_t) { return true; }},
      {masks::causal(t), [](int64_t i, int64_t j) { return j <= i; }},
      {masks::full_document(cu), [&](int64_t i, int64_t j) { return doc(i) == doc(j); }},
      {masks::causal_document(cu), [&](int64_t i, int64_t j) { return doc(i) == doc(j) && j <= i; }},
      {masks::share_question(cu),
       [&](int64_t i, int64_t j) {
         if (doc(i) <= 1) return j <= i && doc(j) <= 1;       // question + first answer: one causal block
         return (doc(j) == 0) || (doc(j) == doc(i) && j <= i);  // later answers: question + themselves
       }},
      {masks::causal_blockwise(cu),
       [&](int64_t i, int64_t j) { return (doc(i) == doc(j) && j <= i) || (doc(i) == n - 1 && j < cu[n - 1]); }},
      {masks::prefix_lm_causal(t, prefix), [&](int64_t i, int64_t j) { return j <= i || (i < prefix && j < prefix); }},
      {masks::prefix_lm_document(cu, 3),
       [&](int64_t i, int64_t j) {
         const int64_t d = doc(i), p = cu[d] + std::min<int64_t>(3, cu[d + 1] - cu[d]);
         return doc(j) == d && (j <= i || (i < p && j < p));
       }},
      {masks::sliding_window(t, w), [&](int64_t i, int64_t j) { return std::abs(i - j) <= w; }},
      {masks::sliding_window_causal(t, w), [&](int64_t i, int64_t j) { return i - j >= 0 && i - j <= w; }},
      {masks::global_sliding_window(t, g, w),
       [&](int64_t i, int64_t j) { return i < g || j < g || std::abs(i - j) <= w; }},
      {masks::block_causal_document(cu, block),
       [&](int64_t i, int64_t j) { return doc(i) == doc(j) && (j - cu[doc(j)]) / block <= (i - cu[doc(i)]) / block; }},
  };
  ASSERT_EQ(cases.size(), masks::family_names().size());
  for (size_t c = 0; c < cases.size(); ++c) {
    const auto& [m, pred] = cases[c];
    int64_t area = 0;
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < t; ++j) {
        ASSERT_EQ(m.visible(i, j), pred(i, j)) << masks::family_names()[c] << " (" << m.describe() << ") at i=" << i
                                               << " j=" << j;
        area += pred(i, j);
      }
    EXPECT_EQ(m.area(0, t, 0, t), area) << masks::family_names()[c];
    EXPECT_EQ(m.length(), t) << masks::family_names()[c];
    // make() builds the same mask from the name.
    const Mask made = masks::make(masks::family_names()[c], t, masks::uses_documents(masks::family_names()[c]) ? cu
                                                                                                               : std::vector<int64_t>{},
                                  masks::family_names()[c] == "prefix_lm_causal"     ? prefix
                                  : masks::family_names()[c] == "prefix_lm_document" ? 3
                                  : masks::family_names()[c] == "block_causal_document" ? block
                                                                                          : w,
                                  g);
    EXPECT_EQ(made.fingerprint(), m.fingerprint()) << masks::family_names()[c];
  }
}

// The shorthands keep their predicate, and equal families built differently agree exactly.
TEST(Mask, ShorthandsKeepTheirPredicate) {
  const std::vector<int64_t> cu{0, 5, 5, 17, 40};
  auto doc = [&](int64_t p) { return std::upper_bound(cu.begin(), cu.end(), p) - cu.begin() - 1; };
  const Mask m = Mask::causal().documents(cu).window(6, 2);
  for (int64_t i = 0; i < 40; ++i)
    for (int64_t j = 0; j < 40; ++j)
      ASSERT_EQ(m.visible(i, j), doc(i) == doc(j) && j <= i && i - j <= 6) << i << "," << j;
  EXPECT_EQ(m.describe(), "causal+documents(4)+window(6,2)");
  EXPECT_TRUE(m.is_causal() && m.has_documents() && m.has_window() && !m.is_general());
  EXPECT_EQ(Mask::causal().documents(cu).fingerprint(), masks::causal_document(cu).fingerprint());
  EXPECT_EQ(Mask::full().window(4, 4).spec().band_width(), 8);
  EXPECT_EQ(Mask::causal().spec().band_width(), -1);
  // Unbounded shorthands hold at any position.
  EXPECT_TRUE(Mask::causal().visible(1000000, 3));
  EXPECT_FALSE(Mask::causal().visible(3, 1000000));
  EXPECT_TRUE(masks::share_question(cu).is_general());
  EXPECT_EQ(masks::share_question(cu).cu_seqlens(), cu);
}

TEST(Mask, BadInputIsNamed) {
  expect_error([] { Mask::from_slices(10, {MaskSlice::full(0, 11, 0, 5)}); }, "slice 0 (q [0, 11) x k [0, 5))");
  expect_error([] { Mask::from_slices(10, {MaskSlice::full(0, 5, 0, 5), MaskSlice::full(-1, 3, 6, 9)}); },
                 "slice 1");
  expect_error([] { Mask::from_slices(10, {MaskSlice::full(0, 5, 0, 5), MaskSlice::causal(3, 8, 0, 8)}); },
                 "slices 0 (q [0, 5) x k [0, 5)) and 1");
  // Touching but not sharing a pair is fine: a causal slice next to a full one.
  EXPECT_NO_THROW(Mask::from_slices(10, {MaskSlice::full(5, 10, 0, 5), MaskSlice::causal(5, 10, 5, 10)}));
  expect_error([] { masks::make("causal_document", 50, {0, 10, 40}); }, "end at 40, expected T = 50");
  expect_error([] { masks::causal_document({0, 10, 5}); }, "must not decrease");
  expect_error([] { masks::sliding_window(100, 0); }, "window w must be > 0, got 0");
  expect_error([] { masks::sliding_window_causal(100, -3); }, "window w must be > 0, got -3");
  expect_error([] { masks::block_causal_document({0, 10}, 0); }, "block size must be > 0, got 0");
  expect_error([] { masks::prefix_lm_causal(10, 11); }, "prefix must be in [0, T = 10], got 11");
  expect_error([] { masks::global_sliding_window(10, 20, 2); }, "global tokens g must be in [0, T = 10]");
  expect_error([] { masks::make("diagonal", 10); }, "unknown mask family 'diagonal'; known: full, causal");
  expect_error([] { masks::full(10).documents(std::vector<int64_t>{0, 4, 12}); }, "end at 12");
}

}  // namespace
}  // namespace longhaul

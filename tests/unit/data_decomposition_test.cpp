// Dataset decomposition invariants (Pouransari et al. 2024, arXiv 2405.13226): pieces inside their document, adjacent, in
// order, largest first, power-of-two lengths in range; l mod 2^m tokens dropped per document;
// ⌊l/2^M⌋ + popcount((l mod 2^M) >> m) pieces; tokens(D_i) = 2^i·|D_i|.
#include <gtest/gtest.h>

#include "data/decomposition.h"
#include "data/rng.h"
#include "core/errors.h"
#include "tests/unit/data_test_util.h"

namespace longhaul::data {
namespace {

using testing::offsets_of;

std::vector<int64_t> random_lengths(int n, int64_t max_len, uint64_t seed) {
  SplitMix64 g{seed};
  std::vector<int64_t> l;
  for (int i = 0; i < n; ++i) {
    // Mostly short, some long, some exact powers of two and their neighbours, a few empty.
    const uint64_t kind = g.below(10);
    if (kind == 0) l.push_back(0);
    else if (kind == 1) l.push_back((int64_t(1) << g.below(16)) + int64_t(g.below(3)) - 1);
    else l.push_back(int64_t(g.below(uint64_t(max_len))));
  }
  return l;
}

TEST(DataDecomposition, DocumentCutInvariants) {
  for (BucketRange r : {BucketRange{8, 13}, BucketRange{0, 0}, BucketRange{3, 3}, BucketRange{2, 9}, BucketRange{0, 20}}) {
    for (int64_t l : random_lengths(3000, 70000, 7 + r.min_log2 * 31 + r.max_log2)) {
      const int64_t start = 12345;
      auto cuts = decompose_document(start, l, r);
      const int64_t expected_count = l / r.max_len() + __builtin_popcountll(uint64_t(l % r.max_len()) >> r.min_log2);
      ASSERT_EQ(int64_t(cuts.size()), expected_count) << "l=" << l;
      int64_t at = start;
      int prev = 1 << 30;
      for (const auto& c : cuts) {
        EXPECT_EQ(c.start, at) << "pieces adjacent and in document order, l=" << l;
        EXPECT_GE(c.log2_len, r.min_log2);
        EXPECT_LE(c.log2_len, r.max_log2);
        EXPECT_LE(c.log2_len, prev) << "largest first, l=" << l;
        prev = c.log2_len;
        at += int64_t(1) << c.log2_len;
      }
      EXPECT_LE(at, start + l) << "pieces inside the document";
      EXPECT_EQ(start + l - at, l % r.min_len()) << "dropped tokens = l mod 2^m, l=" << l;
    }
  }
}

TEST(DataDecomposition, BucketsAndCounts) {
  const BucketRange r{8, 13};
  auto lengths = random_lengths(5000, 40000, 99);
  lengths.push_back(255);   // shorter than 2^m: all dropped
  lengths.push_back(8193);  // longer than 2^M
  const auto off = offsets_of(lengths);
  Decomposition dd(off, r);
  int64_t dropped = 0, empty = 0, short_docs = 0, long_docs = 0, pieces = 0;
  for (int64_t l : lengths) {
    dropped += l % 256;
    empty += l == 0;
    short_docs += l < 256;
    long_docs += l > 8192;
    pieces += l / 8192 + __builtin_popcountll(uint64_t(l % 8192) >> 8);
  }
  EXPECT_EQ(dd.dropped_tokens(), dropped);
  EXPECT_EQ(dd.empty_documents(), empty);
  EXPECT_EQ(dd.short_documents(), short_docs);
  EXPECT_EQ(dd.long_documents(), long_docs);
  EXPECT_EQ(dd.num_pieces(), pieces);
  int64_t kept = 0;
  for (int i = 8; i <= 13; ++i) {
    const auto& b = dd.bucket(i);
    int64_t tokens = 0;
    for (const Piece& p : b) {
      const int64_t len = int64_t(1) << i;
      ASSERT_GE(p.start, int64_t(off[p.doc]));
      ASSERT_LE(p.start + len, int64_t(off[p.doc + 1])) << "piece inside its document";
      tokens += len;
    }
    EXPECT_EQ(tokens, (int64_t(1) << i) * dd.bucket_size(i)) << "tokens(D_i) = 2^i |D_i|";
    kept += tokens;
  }
  EXPECT_EQ(kept + dd.dropped_tokens(), dd.input_tokens()) << "every token in one bucket or dropped";
  EXPECT_EQ(kept, dd.kept_tokens());
  EXPECT_THROW(dd.bucket(14), InvalidArgument);
}

TEST(DataDecomposition, EdgeCasesAndBadInput) {
  Decomposition none(std::vector<uint64_t>{0}, BucketRange{});
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.num_documents(), 0);
  Decomposition shorts(offsets_of({0, 10, 255}), BucketRange{});
  EXPECT_TRUE(shorts.empty());
  EXPECT_EQ(shorts.dropped_tokens(), 265);
  EXPECT_EQ(shorts.empty_documents(), 1);
  try {
    Decomposition bad(std::vector<uint64_t>{0, 10, 5}, BucketRange{});
    FAIL() << "decreasing offsets accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("decrease at document 1"), std::string::npos) << e.what();
  }
  try {
    Decomposition bad(std::vector<uint64_t>{0, 10}, BucketRange{9, 8});
    FAIL() << "m > M accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("0 <= m <= M"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Decomposition(std::vector<uint64_t>{3, 10}, BucketRange{}), InvalidArgument);
  EXPECT_THROW(Decomposition(std::vector<uint64_t>{}, BucketRange{}), InvalidArgument);
}

}  // namespace
}  // namespace longhaul::data

// masks::make_packed: a family on sequences packed back to back, as each training step packs its
// sequences. No query sees another sequence, for every family; within a sequence each family
// holds on the right unit (a document for the families without documents, the sequence for
// share_question and causal_blockwise), with the prefix and the global tokens cut to the unit.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "attention/mask.h"
#include "core/errors.h"
#include "tests/common/expect_error.h"

namespace longhaul {
namespace {

using testing::expect_error;

int64_t unit_of(const std::vector<int64_t>& offsets, int64_t p) {
  return std::upper_bound(offsets.begin(), offsets.end(), p) - offsets.begin() - 1;
}

std::vector<int64_t> inside(const std::vector<int64_t>& cu, int64_t b, int64_t e) {
  std::vector<int64_t> r;
  for (int64_t c : cu)
    if (c >= b && c <= e) r.push_back(c - b);
  return r;
}

int64_t param_of(const std::string& name) {
  if (name == "prefix_lm_causal" || name == "prefix_lm_document") return 9;  // longer than some documents
  if (name == "block_causal_document") return 4;
  return 3;  // the window
}

TEST(MaskPacked, NoSequenceSeesAnotherAndEachFamilyHoldsOnItsUnit) {
  const std::vector<int64_t> seqs{0, 20, 40, 60}, cu{0, 7, 20, 21, 40, 52, 60};
  const int64_t t = 60, g = 5;  // 5 global tokens: more than the 1-token document holds
  for (const std::string& name : masks::family_names()) {
    const int64_t p = param_of(name);
    const Mask m = masks::make_packed(name, seqs, cu, p, g);
    // The definition, unit by unit.
    auto expected = [&](int64_t i, int64_t j) {
      const int64_t s = unit_of(seqs, i);
      if (s != unit_of(seqs, j)) return false;
      if (name == "share_question" || name == "causal_blockwise") {
        const int64_t b = seqs[s];
        return masks::make(name, seqs[s + 1] - b, inside(cu, b, seqs[s + 1])).visible(i - b, j - b);
      }
      if (masks::uses_documents(name)) return masks::make(name, t, cu, p).visible(i, j);
      const int64_t d = unit_of(cu, i);
      if (d != unit_of(cu, j)) return false;
      const int64_t b = cu[d], len = cu[d + 1] - b;
      return masks::make(name, len, {}, name == "prefix_lm_causal" ? std::min(p, len) : p, std::min(g, len))
          .visible(i - b, j - b);
    };
    int64_t area = 0;
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < t; ++j) {
        ASSERT_EQ(m.visible(i, j), expected(i, j)) << name << " (" << m.describe() << ") at i=" << i << " j=" << j;
        area += expected(i, j);
      }
    EXPECT_EQ(m.area(0, t, 0, t), area) << name;
    EXPECT_EQ(m.length(), t) << name;
    EXPECT_EQ(m.cu_seqlens(), cu) << name;  // what the shard plan's documents must equal
  }
}

// The families the predicate shorthands express stay shorthands (the kernels' fast paths), and a
// pack of one-document sequences is exactly what each family means there.
TEST(MaskPacked, ShorthandsStayShorthandsAndOneDocumentSequencesAreTheirFamily) {
  const std::vector<int64_t> seqs{0, 16, 32, 48, 64};
  EXPECT_EQ(masks::make_packed("causal", seqs).fingerprint(), masks::causal_document(seqs).fingerprint());
  EXPECT_EQ(masks::make_packed("full", seqs).fingerprint(), masks::full_document(seqs).fingerprint());
  const Mask w = masks::make_packed("sliding_window_causal", seqs, {}, 5);
  EXPECT_TRUE(w.is_causal() && w.has_documents() && w.has_window() && !w.is_general()) << w.describe();
  EXPECT_EQ(w.left(), 5);
  EXPECT_EQ(w.right(), 0);
  // share_question and causal_blockwise on one document are causal: each sequence causal on itself.
  for (const char* name : {"share_question", "causal_blockwise"}) {
    const Mask m = masks::make_packed(name, seqs);
    for (int64_t i = 0; i < 64; ++i)
      for (int64_t j = 0; j < 64; ++j)
        ASSERT_EQ(m.visible(i, j), i / 16 == j / 16 && j <= i) << name << " at i=" << i << " j=" << j;
  }
  // One sequence of one document is the family itself, with the prefix cut to it.
  EXPECT_EQ(masks::make_packed("causal", {0, 64}).fingerprint(), masks::causal(64).fingerprint());
  EXPECT_EQ(masks::make_packed("prefix_lm_causal", {0, 64}, {}, 100).fingerprint(),
            masks::prefix_lm_causal(64, 64).fingerprint());
  EXPECT_EQ(masks::make_packed("global_sliding_window", {0, 64}, {}, 3, 80).fingerprint(),
            masks::global_sliding_window(64, 64, 3).fingerprint());
}

TEST(MaskPacked, BadInputIsNamed) {
  expect_error([] { masks::make_packed("causal", {0, 10, 20}, {0, 5, 20}); },
                 "sequence boundary 10 is not a document boundary");
  expect_error([] { masks::make_packed("causal", {0, 10, 20}, {0, 10, 30}); }, "the documents end at 30");
  expect_error([] { masks::make_packed("causal", {0, 10, 5}); }, "must not decrease");
  expect_error([] { masks::make_packed("causal", {0}); }, "the sequences");
  expect_error([] { masks::make_packed("sliding_window", {0, 10, 20}, {}, 0); }, "window w must be > 0, got 0");
  expect_error([] { masks::make_packed("prefix_lm_causal", {0, 10, 20}, {}, -1); }, "prefix must be >= 0, got -1");
  expect_error([] { masks::make_packed("global_sliding_window", {0, 10, 20}, {}, 2, -1); },
                 "global tokens must be >= 0, got -1");
  expect_error([] { masks::make_packed("diagonal", {0, 10, 20}); }, "unknown mask family 'diagonal'");
}

}  // namespace
}  // namespace longhaul

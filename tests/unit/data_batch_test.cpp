// Batches (tokens, targets, positions, cu_seqlens), the prefetching loader (same stream, resume,
// errors), the concat-and-chunk baseline and the attention cost model.
#include <gtest/gtest.h>

#include <algorithm>

#include "data/attention_cost.h"
#include "data/batch.h"
#include "data/concat_chunk.h"
#include "data/format.h"
#include "data/prefetch_loader.h"
#include "data/rng.h"
#include "data/sampler.h"
#include "core/errors.h"

namespace longhaul::data {
namespace {

std::vector<int64_t> lengths(int n, uint64_t seed) {
  SplitMix64 g{seed};
  std::vector<int64_t> l;
  for (int i = 0; i < n; ++i) l.push_back(int64_t(g.below(3000)));
  return l;
}

// Checks a batch against the source: tokens, next-token targets inside documents, positions.
void check_batch(MemoryTokenSource& src, const Batch& b) {
  const auto& off = src.doc_offsets();
  ASSERT_EQ(b.num_tokens(), b.num_sequences() * b.plan.seq_len);
  ASSERT_EQ(b.cu_seqlens.front(), 0);
  ASSERT_EQ(b.cu_seqlens.back(), b.num_tokens());
  std::vector<int32_t> all(src.num_tokens());
  src.read(0, src.num_tokens(), all.data());
  int64_t at = 0;
  for (const auto& s : b.plan.sequences) {
    for (int64_t t = 0; t < s.length; ++t) {
      const int64_t g = s.start + t;
      const size_t d = std::upper_bound(off.begin(), off.end(), uint64_t(g)) - off.begin() - 1;
      EXPECT_EQ(b.tokens[at + t], all[g]);
      EXPECT_EQ(b.targets[at + t], uint64_t(g + 1) < off[d + 1] ? all[g + 1] : kIgnoreTarget) << "g=" << g;
    }
    at += s.length;
  }
  // Positions restart at every cu_seqlens boundary.
  for (size_t k = 0; k + 1 < b.cu_seqlens.size(); ++k)
    for (int64_t t = b.cu_seqlens[k]; t < b.cu_seqlens[k + 1]; ++t) EXPECT_EQ(b.positions[t], t - b.cu_seqlens[k]);
}

TEST(DataBatch, DDPiecesAreShardPlanReadySequences) {
  auto src = MemoryTokenSource::synthetic(lengths(300, 1));
  auto dd = std::make_shared<Decomposition>(src.doc_offsets(), BucketRange{4, 9});
  DDSampler s(dd, SamplerOptions{2048, 2, 1, Curriculum::Uniform, 2, 3});
  int n = 0;
  while (auto p = s.next()) {
    Batch b = build_batch(src, *p);
    check_batch(src, b);
    ASSERT_EQ(b.num_tokens(), 1024);
    ASSERT_EQ(int64_t(b.cu_seqlens.size()), b.num_sequences() + 1) << "one document per piece";
    for (int64_t j = 0; j < b.num_sequences(); ++j) {
      auto v = b.sequence(j);
      EXPECT_EQ(v.cu_seqlens, (std::vector<int64_t>{0, b.plan.seq_len}));
      EXPECT_EQ(v.positions[0], 0);
      EXPECT_EQ(v.positions[v.length - 1], v.length - 1);
    }
    ++n;
  }
  EXPECT_GT(n, 5);
}

TEST(DataBatch, ConcatChunkWithAndWithoutDocumentMasking) {
  auto src = MemoryTokenSource::synthetic(lengths(200, 2));
  const int64_t L = 512;
  for (bool mask : {false, true}) {
    ConcatChunkSampler s(src.doc_offsets(), ConcatChunkOptions{L, 4 * L, 2, 0, mask, true, 9});
    EXPECT_EQ(s.dropped_tail_tokens(), src.num_tokens() % L);
    EXPECT_EQ(s.num_chunks(), src.num_tokens() / L);
    int64_t steps = 0;
    while (auto p = s.next()) {
      Batch b = build_batch(src, *p);
      check_batch(src, b);
      EXPECT_EQ(b.num_tokens(), 2 * L);
      if (!mask) EXPECT_EQ(b.cu_seqlens, (std::vector<int64_t>{0, L, 2 * L}));
      if (mask) {
        // Every document boundary inside a chunk is a cut.
        const auto& off = src.doc_offsets();
        int64_t at = 0;
        for (const auto& q : p->sequences) {
          for (uint64_t o : off)
            if (int64_t(o) > q.start && int64_t(o) < q.start + L)
              EXPECT_TRUE(std::count(b.cu_seqlens.begin(), b.cu_seqlens.end(), at + int64_t(o) - q.start))
                  << "boundary " << o;
          at += L;
        }
      }
      ++steps;
    }
    EXPECT_EQ(steps, s.steps_per_epoch());
  }
  EXPECT_THROW(ConcatChunkSampler(src.doc_offsets(), ConcatChunkOptions{L, 3 * L, 2, 0, false, true, 0}), InvalidArgument);
}

TEST(DataBatch, ConcatChunkResume) {
  auto src = MemoryTokenSource::synthetic(lengths(200, 3));
  ConcatChunkOptions o{256, 1024, 1, 0, true, true, 4};
  ConcatChunkSampler a(src.doc_offsets(), o), b(src.doc_offsets(), o);
  for (int i = 0; i < 5; ++i) a.next();
  b.restore_state(a.save_state());
  while (auto p = a.next()) {
    auto q = b.next();
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(p->step, q->step);
    EXPECT_EQ(p->sequences[0].start, q->sequences[0].start);
  }
  EXPECT_FALSE(b.next().has_value());

  // Under another option the restore names it; on another data set it says so.
  ConcatChunkOptions shorter = o;
  shorter.seq_len = 128;
  try {
    ConcatChunkSampler(src.doc_offsets(), shorter).restore_state(a.save_state());
    ADD_FAILURE() << "a state of seq_len 256 restored at 128";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("made with seq_len 256, this sampler has seq_len 128"), std::string::npos)
        << e.what();
  }
  auto other = MemoryTokenSource::synthetic(lengths(201, 3));
  try {
    ConcatChunkSampler(other.doc_offsets(), o).restore_state(a.save_state());
    ADD_FAILURE() << "a state of another data set restored";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to another data set"), std::string::npos) << e.what();
  }
}

TEST(DataBatch, AttentionCostByHand) {
  const std::vector<uint64_t> off{0, 3, 8};  // documents of 3 and 5 tokens
  // Chunks of 4: [0,4) [4,8). Plain: 2 · 4·5/2 = 20. Masked: (3·4/2 + 1) + 4·5/2 = 17.
  EXPECT_DOUBLE_EQ(concat_attention_cost(off, 4, false).area, 20.0);
  EXPECT_DOUBLE_EQ(concat_attention_cost(off, 4, true).area, 17.0);
  EXPECT_EQ(concat_attention_cost(off, 4, true).kept_tokens, 8);
  EXPECT_EQ(concat_attention_cost(off, 3, false).kept_tokens, 6) << "the tail is dropped";
  // DD over [2, 4]: 3 → 2 (+1 dropped), 5 → 4 (+1 dropped): areas 3 + 10, 6 tokens kept.
  Decomposition dd(off, BucketRange{1, 2});
  const AttentionCost c = dd_attention_cost(dd);
  EXPECT_DOUBLE_EQ(c.area, 13.0);
  EXPECT_EQ(c.kept_tokens, 6);
  EXPECT_DOUBLE_EQ(c.flops_per_token(1), 4.0 * 13 / 6);
}

TEST(DataLoader, PrefetchedStreamEqualsDirectStreamAndResumes) {
  auto src = std::make_shared<MemoryTokenSource>(MemoryTokenSource::synthetic(lengths(500, 4)));
  auto dd = std::make_shared<Decomposition>(src->doc_offsets(), BucketRange{4, 8});
  const SamplerOptions o{1024, 1, 0, Curriculum::GrowP2, 4, 17};
  std::vector<Batch> direct;
  {
    DDSampler s(dd, o);
    while (auto p = s.next()) direct.push_back(build_batch(*src, *p));
  }
  ASSERT_GT(direct.size(), 20u);
  std::string state;
  size_t k = 0;
  {
    PrefetchLoader loader(src, std::make_shared<DDSampler>(dd, o), 3);
    for (; k < direct.size() / 3; ++k) {
      auto b = loader.next();
      ASSERT_TRUE(b.has_value());
      EXPECT_EQ(b->tokens, direct[k].tokens);
      EXPECT_EQ(b->targets, direct[k].targets);
    }
    state = loader.save_state();  // batches prefetched beyond k are not part of it
  }
  auto resumed = std::make_shared<DDSampler>(dd, o);
  resumed->restore_state(state);
  PrefetchLoader loader(src, resumed, 2);
  for (; k < direct.size(); ++k) {
    auto b = loader.next();
    ASSERT_TRUE(b.has_value()) << k;
    EXPECT_EQ(b->plan.step, direct[k].plan.step);
    EXPECT_EQ(b->tokens, direct[k].tokens);
  }
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_FALSE(loader.next().has_value());
}

class FailingSource : public MemoryTokenSource {
 public:
  explicit FailingSource(const MemoryTokenSource& m) : MemoryTokenSource(m) {}
  void read(int64_t, int64_t, int32_t*) override { throw Error("disk on fire"); }
};

TEST(DataLoader, BackgroundErrorsReachTheCaller) {
  auto mem = MemoryTokenSource::synthetic(lengths(100, 5));
  auto src = std::make_shared<FailingSource>(mem);
  auto dd = std::make_shared<Decomposition>(src->doc_offsets(), BucketRange{4, 8});
  PrefetchLoader loader(src, std::make_shared<DDSampler>(dd, SamplerOptions{256, 1, 0, Curriculum::Uniform, 1, 0}));
  try {
    loader.next();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "disk on fire");
  }
  EXPECT_FALSE(loader.next().has_value());
}

}  // namespace
}  // namespace longhaul::data

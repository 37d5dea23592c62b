// A step's share per data-parallel group (data::group_share) and the document-length mixes the
// planner predicts with (data/length_mix.h).
#include <gtest/gtest.h>

#include <numeric>

#include "core/errors.h"
#include "data/length_mix.h"
#include "data/step_plan.h"

namespace longhaul::data {
namespace {

StepPlan plan_of(int n) {
  StepPlan p;
  p.seq_len = 64;
  for (int i = 0; i < n; ++i) p.sequences.push_back({int64_t(i) * 64, 64});
  return p;
}

TEST(DataGroupShare, ContiguousSharesThatCoverTheStepOnce) {
  for (int n : {0, 1, 3, 4, 7}) {
    for (int groups : {1, 2, 4}) {
      std::vector<int64_t> starts;
      for (int g = 0; g < groups; ++g) {
        const StepPlan s = group_share(plan_of(n), groups, g);
        EXPECT_EQ(s.seq_len, 64);
        EXPECT_LE(s.sequences.size(), size_t(n / groups + 1)) << n << " over " << groups;
        EXPECT_GE(s.sequences.size(), size_t(n / groups)) << n << " over " << groups;
        for (const SeqSlice& q : s.sequences) starts.push_back(q.start);
      }
      std::vector<int64_t> want(n);
      for (int i = 0; i < n; ++i) want[i] = int64_t(i) * 64;
      EXPECT_EQ(starts, want) << n << " over " << groups;  // in order, each once
    }
  }
  EXPECT_TRUE(group_share(plan_of(1), 4, 3).sequences.empty());  // fewer sequences than groups
  EXPECT_THROW(group_share(plan_of(4), 2, 2), InvalidArgument);
  EXPECT_THROW(group_share(plan_of(4), 0, 0), InvalidArgument);
}

TEST(DataLengthMix, LongcaLongPutsMostTokensInLongBuckets) {
  const std::vector<int64_t> lengths = document_length_mix("longca_long", int64_t(1) << 26, 1);
  const int64_t total = std::accumulate(lengths.begin(), lengths.end(), int64_t(0));
  EXPECT_NEAR(double(total), double(int64_t(1) << 26), 40000.0);
  int64_t long_tokens = 0;
  for (int64_t n : lengths) {
    EXPECT_TRUE((n >= 128 && n < 8192) || (n >= 8192 && n <= 30720)) << n;
    if (n >= 8192) long_tokens += n;
  }
  EXPECT_NEAR(double(long_tokens) / double(total), 0.6, 0.01);
  const std::vector<double> share = bucket_token_shares(lengths, BucketRange{8, 14});
  EXPECT_NEAR(std::accumulate(share.begin(), share.end(), 0.0), 1.0, 1e-9);
  EXPECT_GT(share.back(), 0.25);  // 16K pieces of the 8K..30K documents
  EXPECT_EQ(document_length_mix("longca_long", 1000, 7), document_length_mix("longca_long", 1000, 7));
  EXPECT_THROW(document_length_mix("longca_medium", 1000), InvalidArgument);
}

}  // namespace
}  // namespace longhaul::data

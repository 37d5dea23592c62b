// A DD batch goes to the CP group as it is: its global cu_seqlens build a ShardPlan, and the
// plan's positions inside documents are the batch's positions (restarting at 0 in every piece).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "data/batch.h"
#include "data/sampler.h"
#include "parallel/shard_plan.h"

namespace longhaul {
namespace {

TEST(DataShardPlan, BatchesShardWithTheirOwnCuSeqlens) {
  std::vector<int64_t> lengths;
  for (int i = 0; i < 200; ++i) lengths.push_back((i * 7919) % 5000);
  auto src = data::MemoryTokenSource::synthetic(lengths);
  auto dd = std::make_shared<data::Decomposition>(src.doc_offsets(), data::BucketRange{6, 10});
  data::DDSampler sampler(dd, data::SamplerOptions{4096, 1, 0, data::Curriculum::GrowP2, 2, 1});
  int checked = 0;
  while (auto plan = sampler.next()) {
    const data::Batch b = data::build_batch(src, *plan);
    const at::Tensor cu = at::tensor(b.cu_seqlens, at::kLong);
    const at::Tensor tokens = at::tensor(b.tokens, at::kInt);
    const at::Tensor positions = at::tensor(b.positions, at::kInt).to(at::kLong);
    for (Layout layout : {Layout::Zigzag, Layout::Contiguous}) {
      for (int P : {1, 2, 4}) {
        std::vector<at::Tensor> shards;
        for (int r = 0; r < P; ++r) {
          ShardPlan sp(b.num_tokens(), cu, layout, P, r, 16);
          ASSERT_EQ(sp.cu_seqlens(), b.cu_seqlens);
          EXPECT_TRUE(at::equal(sp.doc_positions().to(at::kLong), sp.shard(positions)))
              << "step " << b.plan.step << " " << to_string(layout) << " P=" << P << " rank " << r;
          shards.push_back(sp.shard(tokens));
        }
        EXPECT_TRUE(at::equal(ShardPlan(b.num_tokens(), cu, layout, P, 0, 16).unshard(shards), tokens));
      }
    }
    if (++checked == 12) break;
  }
  EXPECT_EQ(checked, 12);
}

}  // namespace
}  // namespace longhaul

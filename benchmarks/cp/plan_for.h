// The ShardPlan of a benchmark configuration: the plan and the mask share the documents
// (cu_seqlens), as ContextParallel requires.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "parallel/shard_plan.h"

namespace longhaul::bench {

inline ShardPlan plan_for(int64_t t, const Mask& mask, Layout layout, int p, int rank) {
  std::optional<at::Tensor> cu;
  if (mask.has_documents()) cu = at::tensor(mask.cu_seqlens(), at::kLong);
  return ShardPlan(t, cu, layout, p, rank);
}

}  // namespace longhaul::bench

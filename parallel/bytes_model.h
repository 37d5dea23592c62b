// The bytes one rank sends in one forward pass of a CP strategy, from the formulas of docs/parallel.md
// with the exact per-rank row counts of the plan, minus the transfers the mask lets the strategy
// skip (ring: BlockNeeds; tokenring: TokenRoutes). The planner predicts with it and the CP
// benchmark checks it against ContextParallel::stats(), byte for byte.
#pragma once

#include <cstdint>

#include "attention/mask.h"
#include "parallel/options.h"
#include "parallel/shard_plan.h"

namespace longhaul {

// Q has `h` heads, K and V `h_kv`, of `d` elements of `elem_bytes` bytes each. Throws Unsupported for a
// strategy without a formula here.
// Hybrid: Ulysses degree `ulysses_degree`, `inner` ring or tokenring across the groups.
int64_t forward_bytes_formula(Strategy s, const ShardPlan& plan, const Mask& mask, int rank, int64_t h, int64_t h_kv,
                              int64_t d, int64_t elem_bytes, int ulysses_degree = 1, Strategy inner = Strategy::Ring);

// The maximum over the plan's ranks.
int64_t max_forward_bytes_formula(Strategy s, const ShardPlan& plan, const Mask& mask, int64_t h, int64_t h_kv, int64_t d,
                                  int64_t elem_bytes, int ulysses_degree = 1, Strategy inner = Strategy::Ring);

}  // namespace longhaul

#include "parallel/hybrid_layout.h"

#include "core/errors.h"
#include "parallel/plan_cache.h"

namespace longhaul {

std::vector<int64_t> hybrid_member_rows(const ShardPlan& plan, int u, int r) {
  LH_CHECK(u >= 1 && plan.P() % u == 0, "strategy hybrid: ulysses_degree ", u, " does not divide the CP group size ",
           plan.P());
  std::vector<int64_t> rows(u);
  for (int i = 0; i < u; ++i) rows[i] = plan.local_rows((r / u) * u + i);
  return rows;
}

ShardPlan hybrid_group_plan(const ShardPlan& plan, int u, int r) {
  LH_CHECK(u >= 1 && plan.P() % u == 0, "strategy hybrid: ulysses_degree ", u, " does not divide the CP group size ",
           plan.P());
  // One group plan per (plan, u), shared by the ranks of this process: its rows, and the ring's
  // needs computed from them (BlockNeeds::shared is keyed by a plan's rows), exist once.
  static PlanCache<ShardPlan> cache;
  return cache.get(plan, static_cast<uint64_t>(u), [&] {
    const int rings = plan.P() / u;
    std::vector<std::vector<int64_t>> group_rows(rings);
    for (int j = 0; j < rings; ++j)
      for (int i = 0; i < u; ++i) {
        const auto& rows = plan.rows_of(j * u + i);
        group_rows[j].insert(group_rows[j].end(), rows.begin(), rows.end());
      }
    return std::make_shared<const ShardPlan>(
        ShardPlan::from_rows(plan.T(), plan.cu_seqlens(), plan.layout(), std::move(group_rows), 0));
  })->with_rank(r / u);
}

}  // namespace longhaul

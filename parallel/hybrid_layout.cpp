#include "parallel/hybrid_layout.h"

#include "core/errors.h"

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
  const int rings = plan.P() / u;
  std::vector<std::vector<int64_t>> group_rows(rings);
  for (int j = 0; j < rings; ++j)
    for (int i = 0; i < u; ++i) {
      const auto& rows = plan.rows_of(j * u + i);
      group_rows[j].insert(group_rows[j].end(), rows.begin(), rows.end());
    }
  return ShardPlan::from_rows(plan.T(), plan.cu_seqlens(), plan.layout(), std::move(group_rows), r / u);
}

}  // namespace longhaul

// How hybrid arranges a CP group of P ranks: Ulysses groups of u consecutive ranks (ulysses index
// r % u, ring position r / u: the ProcessMesh order) and a ring over the P/u groups, whose "ranks"
// hold their members' rows. Shared by the strategy and the byte model.
#pragma once

#include <vector>

#include "parallel/shard_plan.h"

namespace longhaul {

// Rows of each member of rank r's Ulysses group.
std::vector<int64_t> hybrid_member_rows(const ShardPlan& plan, int u, int r);
// The plan of the ring over groups, seen from ring position r / u.
ShardPlan hybrid_group_plan(const ShardPlan& plan, int u, int r);

}  // namespace longhaul

#include "parallel/token_routes.h"

#include <ATen/Parallel.h>

#include "parallel/plan_cache.h"

namespace longhaul {

RouteTable::RouteTable(const ShardPlan& plan, const Mask& mask)
    : p_(plan.P()), words_(static_cast<size_t>(plan.P() + 63) / 64), bits_(p_), last_(p_) {
  const auto needs = BlockNeeds::shared(plan, mask);
  // One row's visible keys, then a check against each hop's rank: O(rows · P) in all, split over
  // the origins (each fills only its own tables).
  at::parallel_for(0, p_, 1, [&](int64_t begin, int64_t end) {
    std::vector<PosInterval> keys;
    for (int64_t o = begin; o < end; ++o) {
      const auto& rows = plan.rows_of(static_cast<int>(o));
      auto& bits = bits_[o];
      auto& last = last_[o];
      bits.assign(rows.size() * words_, 0);
      last.assign(rows.size(), 0);
      for (size_t i = 0; i < rows.size(); ++i) {
        mask.spec().keys_of(rows[i], keys);
        for (int t = 1; t < p_; ++t) {
          const int visited = static_cast<int>((o - t + 2 * p_) % p_);
          if (!needs->needed(static_cast<int>(o), visited) || !needs->row_sees(keys, visited)) continue;
          bits[i * words_ + t / 64] |= uint64_t(1) << (t % 64);
          last[i] = t;
        }
      }
    }
  });
}

std::shared_ptr<const RouteTable> RouteTable::shared(const ShardPlan& plan, const Mask& mask) {
  static PlanCache<RouteTable> cache;
  return cache.get(plan, mask.fingerprint(), [&] { return std::make_shared<const RouteTable>(plan, mask); });
}

}  // namespace longhaul

// TokenRing's routing, from the ShardPlan and the mask alone (every rank computes the same): which
// query rows of a travelling Q block are still needed, and which return a result, at each hop.
#pragma once

#include <vector>

#include "parallel/block_needs.h"

namespace longhaul {

// Which rows of a travelling Q block go where: indices into the origin's local rows.
class TokenRoutes {
 public:
  TokenRoutes(const ShardPlan& plan, const Mask& mask)
      : plan_(plan), mask_(mask), needs_(BlockNeeds::shared(plan, mask)), p_(plan.P()) {}

  // Rank the block of `origin` visits at hop t (1 … P−1): it travels to r − 1.
  int visited(int origin, int t) const { return (origin - t + 2 * p_) % p_; }
  // Rows of origin's block that see keys of the rank visited at hop t.
  std::vector<int64_t> result_rows(int origin, int t) const { return rows_seeing(origin, t, t); }
  // Rows that travel into hop t: needed at hop t or any later one.
  std::vector<int64_t> payload_rows(int origin, int t) const {
    return t < p_ ? rows_seeing(origin, t, p_ - 1) : std::vector<int64_t>{};
  }

 private:
  std::vector<int64_t> rows_seeing(int origin, int t_first, int t_last) const {
    std::vector<int64_t> out;
    std::vector<PosInterval> keys;
    const auto& rows = plan_.rows_of(origin);
    for (int64_t i = 0; i < static_cast<int64_t>(rows.size()); ++i) {
      mask_.spec().keys_of(rows[i], keys);  // once per row, then checked against each hop's rank
      for (int t = t_first; t <= t_last; ++t)
        if (needs_->row_sees(keys, visited(origin, t))) {
          out.push_back(i);
          break;
        }
    }
    return out;
  }

  const ShardPlan& plan_;
  const Mask& mask_;
  std::shared_ptr<const BlockNeeds> needs_;
  int p_;
};

}  // namespace longhaul

// TokenRing's routing, from the ShardPlan and the mask alone (every rank computes the same): which
// query rows of a travelling Q block are still needed, and which return a result, at each hop.
#pragma once

#include <memory>
#include <vector>

#include "parallel/block_needs.h"

namespace longhaul {

// For every origin's rows, the hops whose visited rank they see: one bit per hop, computed once
// per (plan, mask) and shared by the ranks of a process (PlanCache). T · ⌈P/64⌉ words.
class RouteTable {
 public:
  RouteTable(const ShardPlan& plan, const Mask& mask);
  static std::shared_ptr<const RouteTable> shared(const ShardPlan& plan, const Mask& mask);

  bool sees(int origin, int64_t row, int t) const {
    return (bits_[origin][static_cast<size_t>(row) * words_ + t / 64] >> (t % 64)) & 1;
  }
  int last_hop(int origin, int64_t row) const { return last_[origin][static_cast<size_t>(row)]; }
  int64_t rows(int origin) const { return static_cast<int64_t>(last_[origin].size()); }

 private:
  int p_;
  size_t words_;
  std::vector<std::vector<uint64_t>> bits_;  // per origin: rows × words_
  std::vector<std::vector<int>> last_;       // per origin: the farthest hop a row sees (0: none)
};

// Which rows of a travelling Q block go where: indices into the origin's local rows.
class TokenRoutes {
 public:
  TokenRoutes(const ShardPlan& plan, const Mask& mask) : table_(RouteTable::shared(plan, mask)), p_(plan.P()) {}

  // Rank the block of `origin` visits at hop t (1 … P−1): it travels to r − 1.
  int visited(int origin, int t) const { return (origin - t + 2 * p_) % p_; }
  // Rows of origin's block that see keys of the rank visited at hop t.
  std::vector<int64_t> result_rows(int origin, int t) const {
    std::vector<int64_t> out;
    for (int64_t i = 0; i < table_->rows(origin); ++i)
      if (table_->sees(origin, i, t)) out.push_back(i);
    return out;
  }
  // Rows that travel into hop t: needed at hop t or any later one.
  std::vector<int64_t> payload_rows(int origin, int t) const {
    std::vector<int64_t> out;
    if (t >= p_) return out;
    for (int64_t i = 0; i < table_->rows(origin); ++i)
      if (table_->last_hop(origin, i) >= t) out.push_back(i);
    return out;
  }

 private:
  std::shared_ptr<const RouteTable> table_;
  int p_;
};

}  // namespace longhaul

#include "parallel/block_needs.h"

#include <algorithm>

namespace longhaul {

namespace {

constexpr size_t kMaxRanges = 64;

std::vector<RowRange> covering_ranges(std::vector<int64_t> pos) {
  std::sort(pos.begin(), pos.end());
  std::vector<RowRange> runs;
  for (int64_t p : pos) {
    if (!runs.empty() && runs.back().pos_max + 1 == p)
      runs.back().pos_max = p;
    else
      runs.push_back({p, p});
  }
  if (runs.size() <= kMaxRanges) return runs;
  std::vector<RowRange> merged;  // kMaxRanges groups of consecutive runs
  for (size_t g = 0; g < kMaxRanges; ++g) {
    const size_t a = g * runs.size() / kMaxRanges, b = (g + 1) * runs.size() / kMaxRanges;
    if (b > a) merged.push_back({runs[a].pos_min, runs[b - 1].pos_max});
  }
  return merged;
}

// Some interval of `iv` meets some range of `ranges` (both sorted and disjoint).
bool meets(const std::vector<PosInterval>& iv, const std::vector<RowRange>& ranges) {
  size_t a = 0, b = 0;
  while (a < iv.size() && b < ranges.size()) {
    if (iv[a].hi < ranges[b].pos_min)
      ++a;
    else if (ranges[b].pos_max < iv[a].lo)
      ++b;
    else
      return true;
  }
  return false;
}

}  // namespace

BlockNeeds::BlockNeeds(const ShardPlan& plan, const Mask& mask)
    : ranges_(plan.P()), p_(plan.P()), needed_(p_ * p_, 0), last_hop_(p_, 0), travelling_(p_),
      whole_(p_, 0) {
  for (int r = 0; r < p_; ++r) ranges_[r] = covering_ranges(plan.rows_of(r));
  for (int qr = 0; qr < p_; ++qr) {
    for (int kr = 0; kr < p_; ++kr) {
      bool any = false;
      for (const RowRange& q : ranges_[qr]) {
        for (const RowRange& k : ranges_[kr])
          if (mask.classify(q, k) != BlockClass::Empty) {
            any = true;
            break;
          }
        if (any) break;
      }
      needed_[qr * p_ + kr] = any;
    }
  }
  // Row level: which key rows of each origin another rank sees, and the last hop that needs one.
  std::vector<PosInterval> queries;
  for (int o = 0; o < p_; ++o) {
    const auto& rows = plan.rows_of(o);
    std::vector<char> seen_by_hop(p_, 0);
    for (int64_t i = 0; i < static_cast<int64_t>(rows.size()); ++i) {
      mask.spec().queries_of(rows[i], queries);
      bool seen = false;
      for (int t = 1; t < p_; ++t) {
        const int x = (o + t) % p_;
        if (!needed(x, o) || !meets(queries, ranges_[x])) continue;
        seen = true;
        seen_by_hop[t] = 1;
      }
      if (seen) travelling_[o].push_back(i);
    }
    for (int t = 1; t < p_; ++t)
      if (seen_by_hop[t]) last_hop_[o] = t;
    whole_[o] = travelling_[o].size() == rows.size();
  }
}

bool BlockNeeds::row_sees(const std::vector<PosInterval>& keys, int kr) const { return meets(keys, ranges_[kr]); }

}  // namespace longhaul

#include "parallel/block_needs.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "parallel/plan_cache.h"

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

// Some interval of [iv, iv_end) meets some range of `ranges` (both sorted and disjoint).
bool meets(const PosInterval* iv, const PosInterval* iv_end, const std::vector<RowRange>& ranges) {
  size_t b = 0;
  while (iv < iv_end && b < ranges.size()) {
    if (iv->hi < ranges[b].pos_min)
      ++iv;
    else if (ranges[b].pos_max < iv->lo)
      ++b;
    else
      return true;
  }
  return false;
}
bool meets(const std::vector<PosInterval>& iv, const std::vector<RowRange>& ranges) {
  return meets(iv.data(), iv.data() + iv.size(), ranges);
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
  // Per run of consecutive key rows, the hops are tried from the farthest down: a hop whose rank
  // sees the whole run (a Full block) settles every row of the run at once; rows are looked at one
  // by one only against the partially visible hops beyond it. O(runs · P) for causal and window
  // masks instead of O(rows · P).
  std::vector<PosInterval> queries;
  std::vector<int> hops;
  for (int o = 0; o < p_; ++o) {
    const auto& rows = plan.rows_of(o);
    hops.clear();
    for (int t = p_ - 1; t >= 1; --t)
      if (needed((o + t) % p_, o)) hops.push_back(t);  // farthest first
    auto sees_row = [&](int64_t pos, int t) {
      mask.spec().queries_of(pos, queries);
      return meets(queries, ranges_[(o + t) % p_]);
    };
    const int64_t n = static_cast<int64_t>(rows.size());
    for (int64_t i = 0; i < n && !hops.empty();) {
      int64_t e = i + 1;
      while (e < n && rows[e] == rows[e - 1] + 1) ++e;  // [i, e): consecutive positions
      const RowRange run{rows[i], rows[e - 1]};
      // The farthest hop that sees the whole run, and the partial hops beyond it.
      int full_hop = 0;
      std::vector<int> partial;
      for (int t : hops) {
        BlockClass best = BlockClass::Empty;
        for (const RowRange& q : ranges_[(o + t) % p_]) {
          const BlockClass c = mask.classify(q, run);
          // Full: every position of q sees every key of the run, and q's ends are rows of that rank.
          if (c == BlockClass::Full) {
            best = BlockClass::Full;
            break;
          }
          if (c != BlockClass::Empty) best = BlockClass::Partial;
        }
        if (best == BlockClass::Full) {
          full_hop = t;
          break;
        }
        if (best == BlockClass::Partial) partial.push_back(t);
      }
      if (full_hop > 0) {
        for (int64_t j = i; j < e; ++j) travelling_[o].push_back(j);
        last_hop_[o] = std::max(last_hop_[o], full_hop);
        for (int t : partial) {  // beyond the full hop: does any row of the run reach it?
          if (t <= last_hop_[o]) break;
          bool any = false;
          for (int64_t j = i; j < e && !any; ++j) any = sees_row(rows[j], t);
          if (any) {
            last_hop_[o] = t;
            break;
          }
        }
      } else {
        for (int64_t j = i; j < e; ++j)
          for (int t : partial)
            if (sees_row(rows[j], t)) {  // the farthest hop that sees the row
              travelling_[o].push_back(j);
              last_hop_[o] = std::max(last_hop_[o], t);
              break;
            }
      }
      i = e;
    }
    whole_[o] = travelling_[o].size() == rows.size();
    travelling_index_.push_back(at::tensor(at::ArrayRef<int64_t>(travelling_[o]), at::kLong));
    travelling_positions_.push_back(plan.positions(o).index_select(0, travelling_index_.back()));
  }
}

std::shared_ptr<const BlockNeeds> BlockNeeds::shared(const ShardPlan& plan, const Mask& mask) {
  static PlanCache<BlockNeeds> cache;
  return cache.get(plan, mask.fingerprint(), [&] { return std::make_shared<const BlockNeeds>(plan, mask); });
}

bool BlockNeeds::row_sees(const std::vector<PosInterval>& keys, int kr) const { return meets(keys, ranges_[kr]); }

std::pair<int64_t, int64_t> BlockNeeds::rows_seeing(const RowKeys& rows, int kr) const {
  const int64_t n = static_cast<int64_t>(rows.ptr.size()) - 1;
  auto sees = [&](int64_t i) { return meets(rows.iv.data() + rows.ptr[i], rows.iv.data() + rows.ptr[i + 1], ranges_[kr]); };
  int64_t first = 0, last = n;
  while (first < last && !sees(first)) ++first;
  while (last > first && !sees(last - 1)) --last;
  return {first, last};
}

}  // namespace longhaul

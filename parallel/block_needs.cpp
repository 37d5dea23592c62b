#include "parallel/block_needs.h"

#include <algorithm>
#include <map>

namespace longhaul {

BlockNeeds::BlockNeeds(const ShardPlan& plan, const Mask& mask)
    : mask_(&mask), ranges_(plan.P()), p_(plan.P()), needed_(p_ * p_, 0), last_hop_(p_, 0), travelling_(p_),
      whole_(p_, 0) {
  // Per rank and document: the range of positions the rank holds in it.
  auto& ranges = ranges_;
  for (int r = 0; r < p_; ++r) {
    for (int64_t pos : plan.rows_of(r)) {
      const int64_t doc = mask.has_documents() ? mask.document_of(pos) : 0;
      auto [it, fresh] = ranges[r].try_emplace(doc, RowRange{pos, pos, doc, doc});
      if (!fresh) {
        it->second.pos_min = std::min(it->second.pos_min, pos);
        it->second.pos_max = std::max(it->second.pos_max, pos);
      }
    }
  }
  for (int qr = 0; qr < p_; ++qr) {
    for (int kr = 0; kr < p_; ++kr) {
      bool any = false;
      for (const auto& [doc, q] : ranges[qr]) {
        auto it = ranges[kr].find(doc);
        if (it != ranges[kr].end() && mask.classify(q, it->second) != BlockClass::Empty) {
          any = true;
          break;
        }
      }
      needed_[qr * p_ + kr] = any;
    }
  }
  // Row level: which key rows of each origin another rank sees, and the last hop that needs one.
  for (int o = 0; o < p_; ++o) {
    const auto& rows = plan.rows_of(o);
    std::vector<char> seen_by_hop(p_, 0);
    for (int64_t i = 0; i < static_cast<int64_t>(rows.size()); ++i) {
      const int64_t doc = mask.has_documents() ? mask.document_of(rows[i]) : 0;
      bool seen = false;
      for (int t = 1; t < p_; ++t) {
        const int x = (o + t) % p_;
        if (!needed(x, o) || !key_seen(rows[i], doc, x)) continue;
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

bool BlockNeeds::key_seen(int64_t pos, int64_t doc, int qr) const {
  auto it = ranges_[qr].find(doc);
  return it != ranges_[qr].end() && mask_->classify(it->second, RowRange{pos, pos, doc, doc}) != BlockClass::Empty;
}

bool BlockNeeds::row_sees(int64_t pos, int64_t doc, int kr) const {
  auto it = ranges_[kr].find(doc);
  return it != ranges_[kr].end() && mask_->classify(RowRange{pos, pos, doc, doc}, it->second) != BlockClass::Empty;
}

}  // namespace longhaul

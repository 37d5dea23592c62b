#include "parallel/block_needs.h"

#include <algorithm>
#include <map>

namespace longhaul {

BlockNeeds::BlockNeeds(const ShardPlan& plan, const Mask& mask)
    : mask_(&mask), ranges_(plan.P()), p_(plan.P()), needed_(p_ * p_, 0), last_hop_(p_, 0) {
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
  for (int o = 0; o < p_; ++o)
    for (int t = 1; t < p_; ++t)
      if (needed((o + t) % p_, o)) last_hop_[o] = t;
}

bool BlockNeeds::row_sees(int64_t pos, int64_t doc, int kr) const {
  auto it = ranges_[kr].find(doc);
  return it != ranges_[kr].end() && mask_->classify(RowRange{pos, pos, doc, doc}, it->second) != BlockClass::Empty;
}

}  // namespace longhaul

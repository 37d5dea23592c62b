#include "data/attention_cost.h"

#include <algorithm>

#include "core/errors.h"

namespace longhaul::data {
namespace {
double causal_area(int64_t n) { return 0.5 * double(n) * double(n + 1); }
}  // namespace

AttentionCost dd_attention_cost(const Decomposition& dd) {
  AttentionCost c;
  for (int i = dd.range().min_log2; i <= dd.range().max_log2; ++i) {
    const int64_t n = dd.bucket_size(i);
    c.area += double(n) * causal_area(int64_t(1) << i);
    c.kept_tokens += n << i;
    c.sequences += n;
  }
  return c;
}

AttentionCost concat_attention_cost(const std::vector<uint64_t>& offsets, int64_t L, bool doc_masking) {
  LH_CHECK(!offsets.empty() && L >= 1, "concat_attention_cost: need doc_offsets [0, ..., N] and L >= 1");
  AttentionCost c;
  const int64_t chunks = static_cast<int64_t>(offsets.back()) / L;
  c.sequences = chunks;
  c.kept_tokens = chunks * L;
  if (!doc_masking) {
    c.area = double(chunks) * causal_area(L);
    return c;
  }
  // Walk documents and chunk boundaries together: each segment is one causal block.
  size_t d = 0;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const uint64_t b = uint64_t(ch * L), e = b + uint64_t(L);
    while (offsets[d + 1] <= b) ++d;
    for (size_t k = d; k + 1 < offsets.size() && offsets[k] < e; ++k) {
      const uint64_t s = std::max(offsets[k], b), t = std::min(offsets[k + 1], e);
      if (t > s) c.area += causal_area(int64_t(t - s));
    }
  }
  return c;
}

}  // namespace longhaul::data

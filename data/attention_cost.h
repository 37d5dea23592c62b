// What attention costs over one epoch of a data set, by the masked area (benchmarks/README.md):
// causal attention over a sequence of n tokens covers n(n+1)/2 (query, key) pairs, and
// F_fwd = 4 · area · H · D. Per kept token, this is what DD saves over concat-and-chunk.
#pragma once

#include <cstdint>
#include <vector>

#include "data/decomposition.h"

namespace longhaul::data {

struct AttentionCost {
  double area = 0;          // causal (query, key) pairs, summed over the sequences
  int64_t kept_tokens = 0;  // tokens that are trained on (dropped tails excluded)
  int64_t sequences = 0;
  // Forward FLOPs of one attention layer per kept token, for H · D = model_dim.
  double flops_per_token(int64_t model_dim) const {
    return kept_tokens ? 4.0 * area * double(model_dim) / double(kept_tokens) : 0.0;
  }
};

// Every piece of the decomposition, each its own causal sequence.
AttentionCost dd_attention_cost(const Decomposition& dd);
// Concat-and-chunk at length L (the N mod L tail dropped): one causal mask per chunk or, with
// document masking, one per document segment inside each chunk.
AttentionCost concat_attention_cost(const std::vector<uint64_t>& doc_offsets, int64_t seq_len, bool doc_masking);

}  // namespace longhaul::data

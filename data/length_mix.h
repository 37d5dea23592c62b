// Document-length mixes for predictions when no corpus is at hand, and the token share of each DD
// bucket that a mix of documents yields (decompose_document on every document).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/decomposition.h"

namespace longhaul::data {

// Document lengths of about `total_tokens` tokens, deterministic in `seed`:
//   "longca_long": LongCA-bench's *_document_long composition — 60% of the tokens in documents
//       uniform in [8K, 30K]; the other 40% from a corpus histogram, which is not published with
//       the numbers, so here log-uniform in [128, 8K] (a web-text-like long tail; stated wherever
//       the mix is used);
//   "longca_short": the same corpus part alone (documents of 128..8K).
// InvalidArgument for another name.
std::vector<int64_t> document_length_mix(const std::string& name, int64_t total_tokens, uint64_t seed = 0);
std::vector<std::string> document_length_mixes();
// Document offsets [0, ..., t] of one sequence of t tokens packed from the mix (the last document
// cut to end at t).
std::vector<int64_t> document_offsets_of_mix(const std::string& name, int64_t t, uint64_t seed = 0);

// Per bucket 2^min_log2..2^max_log2: the share of the kept tokens that lands in it.
std::vector<double> bucket_token_shares(const std::vector<int64_t>& lengths, const BucketRange& range);

}  // namespace longhaul::data

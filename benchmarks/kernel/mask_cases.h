// The masks of the benchmarks by name, built for a sequence length: the predicate cases full,
// causal, documents, causal_documents, causal_window, and every long-context family
// (masks::family_names(): full_document, share_question, block_causal_document, ...). Document
// lengths come from a fixed seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/mask.h"

namespace longhaul::bench {

struct MaskCaseOptions {
  int64_t doc_min = 256, doc_max = 4096;  // document lengths, uniform in [doc_min, doc_max]
  std::string doc_mix;                    // or a named mix (data/length_mix.h, e.g. longca_long)
  uint64_t seed = 1234;                   // of the document lengths
  int64_t window_left = 1024, window_right = 0;
  // The families' parameters: sliding windows use window_left as w.
  int64_t prefix = 0;          // prefix_lm_causal: the full prefix (0: T / 4)
  int64_t doc_prefix = 256;    // prefix_lm_document: the full prefix of each document
  int64_t block = 1024;        // block_causal_document
  int64_t global_tokens = 256; // global_sliding_window
};

// The names, in the order of the tables.
const std::vector<std::string>& mask_names();
// Throws InvalidArgument naming the accepted names.
void check_mask_name(const std::string& name);
// Masks torch's SDPA takes as flags (no dense mask needed): full and causal.
bool sdpa_expresses(const std::string& name);

// Offsets [0, l0, l0+l1, ..., t] of documents with lengths drawn uniformly in [doc_min, doc_max]
// from the seed (mt19937_64, the same on every platform); the last document is truncated to fit.
std::vector<int64_t> document_offsets(int64_t t, int64_t doc_min, int64_t doc_max, uint64_t seed);

// The mask `name` over t tokens.
Mask make_mask(const std::string& name, int64_t t, const MaskCaseOptions& options);

// The same mask shrunk from t to small_t tokens for the correctness check: document offsets and
// the window scaled by small_t / t (at least one token each), so the structure is kept.
Mask make_scaled_mask(const std::string& name, int64_t t, int64_t small_t, const MaskCaseOptions& options);

}  // namespace longhaul::bench

// A step's tokens for one data-parallel rank, ready for the CP group: the sequences packed back
// to back with their next-token targets, positions that restart at 0 in every piece, and the
// global cu_seqlens of the packed batch (ShardPlan(T, cu_seqlens, ...) takes them as they are; or
// shard each sequence on its own, see sequence()).
#pragma once

#include <cstdint>
#include <vector>

#include "data/step_plan.h"
#include "data/token_source.h"

namespace longhaul::data {

// One sequence of a batch: the unit a CP group shards. cu_seqlens are offsets inside it ([0, L]
// for a DD piece, more entries for a document-masked concat-and-chunk sequence).
struct SequenceView {
  const int32_t* tokens = nullptr;
  const int32_t* targets = nullptr;
  const int32_t* positions = nullptr;
  int64_t length = 0;
  std::vector<int64_t> cu_seqlens;
};

struct Batch {
  StepPlan plan;                    // step, cycle, bucket, seq_len and where the sequences come from
  std::vector<int32_t> tokens;      // [sequences · seq_len]
  std::vector<int32_t> targets;     // next token of the same document, else kIgnoreTarget (-100)
  std::vector<int32_t> positions;   // 0, 1, … restarting at every cu_seqlens boundary
  std::vector<int64_t> cu_seqlens;  // global offsets in this packed batch: [0, …, tokens.size()]

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_sequences() const { return static_cast<int64_t>(plan.sequences.size()); }
  SequenceView sequence(int64_t j) const;
};

// Reads the plan's tokens from the source (one read per sequence, plus the token after it when
// it lies in the same document, for the last target).
Batch build_batch(TokenSource& source, StepPlan plan);

}  // namespace longhaul::data

// The baseline DD is compared with: concat-and-chunk. The documents (EOS included) are laid back
// to back and cut into sequences of L tokens; the N mod L tokens at the end are dropped and
// counted. Without document masking a sequence is one document for attention (tokens see across
// document boundaries); with it, the step's cu_seqlens also cut at every document boundary inside
// a sequence (global offsets, docs/design.md).
#pragma once

#include <cstdint>
#include <vector>

#include "data/state_text.h"
#include "data/step_plan.h"

namespace longhaul::data {

struct ConcatChunkOptions {
  int64_t seq_len = 2048;       // L
  int64_t tokens_per_step = 0;  // b: divisible by dp_size · L
  int dp_size = 1;
  int dp_rank = 0;
  bool doc_masking = false;
  bool shuffle = true;  // seeded order of the chunks; false: in file order
  uint64_t seed = 0;
};

class ConcatChunkSampler : public PlanSource {
 public:
  ConcatChunkSampler(const std::vector<uint64_t>& doc_offsets, ConcatChunkOptions options);

  std::optional<StepPlan> next() override;
  std::string save_state() const override;
  void restore_state(const std::string& state) override;

  int64_t num_chunks() const { return static_cast<int64_t>(order_.size()); }
  int64_t steps_per_epoch() const { return num_chunks() / (opt_.tokens_per_step / opt_.seq_len); }
  // Tokens after the last whole chunk, and chunks that fill no whole step: dropped, counted.
  int64_t dropped_tail_tokens() const { return tail_; }
  int64_t leftover_chunks() const { return num_chunks() % (opt_.tokens_per_step / opt_.seq_len); }

 private:
  uint64_t fingerprint() const;
  NamedOptions named_options() const;
  ConcatChunkOptions opt_;
  int64_t tokens_ = 0, tail_ = 0;
  std::vector<int64_t> order_;  // chunk indices in the order they are served
  int64_t step_ = 0;
};

}  // namespace longhaul::data

// What a sampler hands out for one training step on one data-parallel rank, before any token is
// read: which sequences, of which length. The batch builder (batch.h) turns it into tokens.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace longhaul::data {

// Tokens [start, start + length) of the store's stream: one sequence.
struct SeqSlice {
  int64_t start = 0;
  int64_t length = 0;
};

struct StepPlan {
  int64_t step = 0;  // 0-based, counted over the whole run
  int cycle = 0;     // DD: the cycle the step belongs to; concat-and-chunk: 0
  int bucket = -1;   // DD: log2 of seq_len; concat-and-chunk: -1
  int64_t seq_len = 0;
  // Concat-and-chunk with document masking: cu_seqlens also cut at the documents inside a
  // sequence. DD pieces lie inside one document, so they never need it.
  bool doc_masking = false;
  std::vector<SeqSlice> sequences;  // this rank's sequences, tokens_per_step / (dp · seq_len) of them
  // DD: bit (i − m) set when bucket i held a full batch at this step's draw (odds statistics).
  uint64_t eligible = 0;
};

// The share of a whole step's plan (every sequence of the world) that data-parallel group `group`
// of `groups` takes: the sequences cut into `groups` contiguous runs whose sizes differ by at most
// one (a group may get none when there are fewer sequences than groups). InvalidArgument for a
// group outside [0, groups).
StepPlan group_share(const StepPlan& whole, int groups, int group);

// A resumable stream of step plans (DDSampler, ConcatChunkSampler).
class PlanSource {
 public:
  virtual ~PlanSource() = default;
  // The next step, or nothing once the epoch is over.
  virtual std::optional<StepPlan> next() = 0;
  // The exact state after the last step handed out, as text (store it in a checkpoint) ...
  virtual std::string save_state() const = 0;
  // ... and back: the next step after a restore is the one that followed the save. Throws
  // InvalidArgument when the state belongs to another sampler, data set or set of options.
  virtual void restore_state(const std::string& state) = 0;
};

}  // namespace longhaul::data

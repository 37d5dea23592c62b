// The dataset-decomposition sampler (arXiv 2405.13226; docs/data.md). Every step holds exactly b
// tokens: one bucket i is drawn (curriculum odds among the buckets that still hold a full batch)
// and the step takes b / 2^i pieces of it, split evenly over the data-parallel ranks. Every rank
// runs the same draws from the same seed, so all ranks agree on the bucket without talking.
//
// Cycles: each bucket's pieces are shuffled once (seeded) and cut into c equal parts; cycle k
// offers part k plus the pieces the previous cycle left (fewer than a batch), and ends when no
// bucket holds a full batch. Within a cycle no piece is used twice. What is left after the last
// cycle is dropped and counted. One pass over the c cycles is an epoch; next() then returns none.
#pragma once

#include <memory>

#include "data/curriculum.h"
#include "data/decomposition.h"
#include "data/rng.h"
#include "data/state_text.h"
#include "data/step_plan.h"

namespace longhaul::data {

struct SamplerOptions {
  int64_t tokens_per_step = 0;  // b: divisible by dp_size · 2^M
  int dp_size = 1;
  int dp_rank = 0;
  Curriculum curriculum = Curriculum::GrowP2;
  int cycles = 8;
  uint64_t seed = 0;
};

class DDSampler : public PlanSource {
 public:
  // Throws InvalidArgument for b not divisible by dp_size · 2^M, bad ranks or cycles, and for a
  // decomposition without pieces (every document shorter than 2^m).
  DDSampler(std::shared_ptr<const Decomposition> dd, SamplerOptions options);

  std::optional<StepPlan> next() override;
  std::string save_state() const override;
  void restore_state(const std::string& state) override;

  const SamplerOptions& options() const { return opt_; }
  const Decomposition& decomposition() const { return *dd_; }
  // Pieces a step of bucket i takes over all ranks: b / 2^i.
  int64_t batch_pieces(int log2_len) const { return opt_.tokens_per_step >> log2_len; }
  // Steps of one epoch, Σ_i ⌊|D_i| / (b/2^i)⌋, and the pieces (tokens) the last cycle leaves over:
  // both fixed by the bucket sizes, whatever the draws.
  int64_t steps_per_epoch() const;
  int64_t leftover_pieces() const;
  int64_t leftover_tokens() const;
  // Pieces and tokens dropped so far (the leftovers, once the last cycle has ended).
  int64_t dropped_pieces() const { return dropped_pieces_; }
  int64_t dropped_tokens() const { return dropped_tokens_; }
  int cycle() const { return cycle_; }
  int64_t step() const { return step_; }

 private:
  int n_buckets() const { return dd_->range().count(); }
  NamedOptions named_options() const;
  int64_t part_begin(int j, int cycle) const;
  int64_t pool_size(int j) const;
  int64_t pool_size(int j, int64_t carried, int cycle) const;  // with `carried` pieces, in `cycle`
  int64_t pool_at(int j, int64_t p) const;  // piece index into bucket j
  void end_cycle();
  uint64_t fingerprint() const;

  std::shared_ptr<const Decomposition> dd_;
  SamplerOptions opt_;
  std::vector<double> odds_;                  // empty for Natural
  std::vector<std::vector<int64_t>> order_;   // per bucket: the seeded permutation of its pieces
  // State.
  int cycle_ = 0;
  int64_t step_ = 0;
  SplitMix64 rng_;
  std::vector<int64_t> cursor_;                // per bucket: pieces taken from the current pool
  std::vector<std::vector<int64_t>> carried_;  // per bucket: pieces carried into the current cycle
  int64_t dropped_pieces_ = 0, dropped_tokens_ = 0;
};

}  // namespace longhaul::data

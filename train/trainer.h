// The training loop of one rank. Every step's sequences are drawn for the whole world (the
// sampler's draws are the same on every rank), then run on the groups of the step's CP degree
// (train/degree_schedule.h: fixed, or chosen per bucket): group g of W/c takes its contiguous
// share of the sequences, every rank of the group builds the same packed batch and takes its
// shard through a ShardPlan. Targets are shifted before sharding (the batch builder computes
// them on the whole sequence), so no target is lost at a shard boundary; gradients are summed
// over the whole world, so the degrees change speed and memory, never the maths. Every public
// call that computes is a collective over the world.
#pragma once

#include <torch/optim/adamw.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/step_plan.h"
#include "data/token_source.h"
#include "parallel/context_parallel.h"
#include "train/attention_clock.h"
#include "train/degree_schedule.h"
#include "train/model.h"
#include "train/options.h"
#include "train/preflight.h"

namespace longhaul::train {

struct StepStats {
  int64_t step = 0;       // 1-based: steps completed
  double loss = 0;        // mean cross-entropy over the step's global targets
  int64_t seq_len = 0;    // the bucket's sequence length
  int64_t tokens = 0;     // tokens of the step over the world
  int64_t targets = 0;    // targets counted in the loss
  int cp_degree = 1;      // ranks per CP group this step (W / cp_degree groups)
  int passes = 1;         // forward/backward passes this rank ran (TrainOptions::micro_batches; 0: no share)
  double lr = 0, grad_norm = 0;
  bool skipped = false;   // the loss was not finite and OptimOptions::skip_nonfinite dropped the step
  // Wall time split: seconds = attention_s + sync_s + rest_s; attention_s = its compute (with the
  // transfers hidden behind it) + comm_wait_s, the exposed wait for its communication.
  double seconds = 0, attention_s = 0, comm_wait_s = 0, sync_s = 0, rest_s = 0;
  // On a GPU attention_s is device time (CUDA events, communication included) and the host's
  // waits mean nothing: comm_wait_s is not measured there (0).
  bool comm_wait_measured = true;
  double tokens_per_s() const { return seconds > 0 ? double(tokens) / seconds : 0; }
};

struct EvalRow {
  int64_t context = 0;
  int64_t correct = 0, total = 0;
  double accuracy() const { return total ? double(correct) / double(total) : 0; }
};

// Mean next-token cross-entropy (nats) of held-out sequences of one length.
struct LossRow {
  int64_t context = 0;    // the sequence length (a DD bucket)
  double loss = 0;        // over the targets of every sequence taken, the world's
  int64_t targets = 0;
  int64_t sequences = 0;  // sequences taken from the bucket (over the world)
};

class Trainer {
 public:
  // source: this rank's reader (not shared between threads). Throws InvalidArgument when the
  // device does not exist here (train/device.h), micro_batches does not divide tokens_per_step
  // (check_micro_batches), cp does not divide the world size, --cp auto
  // cannot plan a bucket or ranks disagree on its plan, or the model's vocabulary cannot hold the
  // source's tokens.
  Trainer(CommPtr world, std::shared_ptr<data::TokenSource> source, TrainOptions options);
  ~Trainer();

  // One optimiser step (a collective). A non-finite loss (the same on every rank: it is the
  // world's) throws NumericalError before any update, or skips the step (OptimOptions::skip_nonfinite).
  StepStats step();
  int64_t steps_done() const { return step_; }

  // The shapes preflight() runs by default (train/preflight.h): from the sampler's non-empty
  // buckets (concat-and-chunk: its one length) and their CP degrees.
  std::vector<PreflightShape> preflight_shapes() const;
  // kPreflightSteps steps of each shape on made-up tokens, each with an update that changes
  // nothing, measuring their peak memory (a collective); the optimiser state is made first, as
  // the first update would make it, so the peaks count it. Parameters, optimiser state, sampler,
  // RNG and step count stay as they were, so a run is the same with or without it. A failed allocation throws c10::OutOfMemoryError naming
  // the shape and the rank (out_of_memory_message).
  std::vector<PreflightResult> preflight(const std::vector<PreflightShape>& shapes);

  // Retrieval accuracy of the embedded task at each length 2^min…2^max (a collective).
  std::vector<EvalRow> evaluate(int min_log2, int max_log2, int docs, int pairs, uint64_t seed);

  // Validation loss on a held-out token store (a collective): its documents cut into the run's DD
  // buckets, and for each length the first max(1, tokens_per_length / L) pieces (document order:
  // the same sequences at every evaluation) run forward without gradients on that length's CP
  // groups, at most a training pass's share of tokens per forward, exactly as the steps compute
  // their loss. A length whose bucket is empty has no row. InvalidArgument when the store's
  // vocabulary does not fit the model's.
  std::vector<LossRow> validation_loss(data::TokenSource& source, int64_t tokens_per_length);

  // Rank 0 writes the checkpoint atomically; every rank waits for it (a collective).
  void save(const std::string& path);
  // Every rank reads and restores model, optimiser, sampler, epoch and RNG. InvalidArgument for a
  // checkpoint of another model shape, --dtype, sampler, data or world size, or a damaged file.
  // The CP degrees and the device are not part of it: a resumed run may choose them anew (the
  // tensors are moved to this run's device).
  void load(const std::string& path);

  Transformer& model() { return *model_; }
  const DegreeSchedule& degrees() const { return *degrees_; }
  const TrainOptions& options() const { return opt_; }

 private:
  // The run's mask family on a pass of T tokens: sequences of seq_len tokens packed back to back,
  // documents cu (global offsets); no sequence sees another (masks::make_packed).
  Mask mask_for(int64_t T, int64_t seq_len, const std::vector<int64_t>& cu) const;
  data::StepPlan next_plan();
  // A pass's inputs on this rank: the batch's mask, its shard plan, and this rank's shard of its
  // tokens (on the CPU: the model moves them) and of its targets (on the device), and how many of
  // those targets count (not -100).
  struct PassInputs {
    Mask mask;
    ShardPlan sp;
    at::Tensor tokens, targets;
    double n_targets = 0;
  };
  PassInputs pass_inputs(const DegreeSchedule::Group& g, const data::Batch& batch) const;
  // Sequences of seq_len tokens in a training pass of one of `groups` data-parallel groups (at
  // least one).
  int64_t sequences_per_pass(int groups, int64_t seq_len) const;
  // What the evaluations hold per forward: a pass's sequences, so they need no more memory than a
  // step; one under Ring Self-Attention, which takes no packed sequences.
  int64_t sequences_per_forward(int groups, int64_t seq_len) const;
  // Rows per chunk of the head and its loss (TrainOptions::loss_chunk_bytes).
  int64_t loss_chunk_rows() const;
  // Ring Self-Attention takes one sequence under a full or causal mask: a run that would pack
  // more (or has documents) is refused before its first step, not at the first such step.
  void check_ring_self_attention_passes();
  struct SharePass {
    at::Tensor loss_sum;    // this rank's summed cross-entropy (a float scalar on the CPU)
    double n_targets = 0;   // the world's targets of the step
    int passes = 0;         // micro-batches this rank ran
  };
  // Forward, loss and backward of this rank's share of a step on group g, in up to
  // opt_.micro_batches passes (the share cut again by data::group_share; empty ones are not run),
  // every pass's loss divided by the world's targets of the whole step, so that the gradients add
  // up to the step's. batch_of builds a pass's batch from its plan. A share without sequences (a
  // step with fewer sequences than groups) only joins the world's collectives.
  SharePass forward_backward(DegreeSchedule::Group& g, const data::StepPlan& share,
                             const std::function<data::Batch(data::StepPlan)>& batch_of);
  std::unique_ptr<data::PlanSource> make_sampler(int64_t epoch) const;
  // Sum of a double over the world.
  double world_sum(double v);

  TrainOptions opt_;
  c10::Device device_;
  CommPtr world_;
  std::shared_ptr<data::TokenSource> source_;
  std::unique_ptr<DegreeSchedule> degrees_;
  std::shared_ptr<Transformer> model_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<torch::optim::AdamW> optim_;
  std::unique_ptr<data::PlanSource> sampler_;
  at::Generator rng_;  // the run's generator (initialisation); saved with the checkpoint
  AttentionClock clock_;
  int64_t step_ = 0, epoch_ = 0;
};

}  // namespace longhaul::train

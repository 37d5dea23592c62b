// The decoder-only transformer over a CP group's shards: token embedding, pre-norm blocks of
// RMSNorm → attention (q, k, v projections, rotary embeddings from the rows' document positions,
// ContextParallel::attention, output projection) and RMSNorm → SwiGLU MLP, a final RMSNorm and the
// output head. Every rank holds all parameters; its input is its shard of the packed sequence.
// Parameters live on one device in the master dtype of ModelOptions::precision; the matmuls and
// the attention run in its compute dtype (train/precision.h).
#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "parallel/context_parallel.h"
#include "train/attention_clock.h"
#include "train/options.h"
#include "train/rope.h"

namespace longhaul::train {

// The weights of one pre-norm block.
struct BlockWeights {
  at::Tensor norm1, wq, wk, wv, wo, norm2, w1, w3, w2;
  std::vector<at::Tensor> all() const { return {norm1, wq, wk, wv, wo, norm2, w1, w3, w2}; }
};

// Attention over this rank's rows: q [Tl, H, D], k/v [Tl, H_kv, D] → out [Tl, H, D].
using AttendFn = std::function<at::Tensor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v)>;

// One block, x [Tl, dim] → [Tl, dim]: x + Wo·attend(rope(Wq·n), rope(Wk·n), Wv·n) with n = RMSNorm(x),
// then + SwiGLU(RMSNorm(·)). Every matmul runs in its weight's dtype (activations are cast to it)
// and q, k, v reach attend in wq's dtype; norms, rotary products and the residual sums promote to
// the wider of their operands' dtypes, so with bf16 matrices over a float32 residual stream only
// the matmuls and the attention are bf16. The model calls it with ContextParallel::attention; benchmarks and
// tests that run the attention by explicit forward/backward calls pass their own attend.
at::Tensor transformer_block(const BlockWeights& w, const ModelOptions& o, const at::Tensor& x, const RopeTables& rope,
                             const AttendFn& attend);

class Transformer : public torch::nn::Module {
 public:
  // Parameters are drawn (in float32, on the CPU) from a generator seeded with options.seed: equal
  // on every rank and thread, whatever else uses torch's default generator, then converted to the
  // master dtype and moved to `device`.
  explicit Transformer(ModelOptions options, c10::Device device = c10::kCPU);

  // tokens int64 [Tl] (this rank's rows of plan, on any device) → logits [Tl, vocab] in the master
  // dtype on the model's device. A collective over
  // cp's group (one attention per layer; as many again in backward, twice with checkpointing).
  at::Tensor forward(const at::Tensor& tokens, ContextParallel& cp, const ShardPlan& plan, const Mask& mask,
                     AttentionClock* clock = nullptr);
  // The same, in two halves: the final normed hidden states [Tl, dim] (master dtype), and the
  // head's logits of some of those rows (forward = logits(hidden(...))).
  at::Tensor hidden(const at::Tensor& tokens, ContextParallel& cp, const ShardPlan& plan, const Mask& mask,
                    AttentionClock* clock = nullptr);
  at::Tensor logits(const at::Tensor& hidden) const;
  // Σ cross-entropy of hidden's rows against targets (-100: none), through the head, the logits
  // formed chunk_rows rows at a time (linear_cross_entropy.h): a pass never holds its [Tl, vocab]
  // logits whole. Differentiable (the loss and its softmax in the master dtype). chunk_rows 0:
  // the plain head, logits whole and torch's cross-entropy (the baseline).
  at::Tensor loss_sum(const at::Tensor& hidden, const at::Tensor& targets, int64_t chunk_rows) const;

  const ModelOptions& options() const { return opt_; }
  const c10::Device& device() const { return device_; }
  // Parameters in registration order (the order of checkpoints and of the gradient buffer).
  std::vector<std::pair<std::string, at::Tensor>> ordered_parameters() const;
  int64_t num_parameters() const;
  const BlockWeights& block_weights(int64_t layer) const { return layers_.at(layer); }

 private:
  using Layer = BlockWeights;
  at::Tensor block(const Layer& l, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                   ContextParallel& cp, const ShardPlan& plan, const Mask& mask, AttentionClock* clock) const;

  ModelOptions opt_;
  c10::Device device_;
  at::Tensor embed_, norm_f_, head_;
  std::vector<Layer> layers_;
  std::vector<std::pair<std::string, at::Tensor>> ordered_;
};

}  // namespace longhaul::train

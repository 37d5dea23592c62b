// The decoder-only transformer over a CP group's shards: token embedding, pre-norm blocks of
// RMSNorm → attention (q, k, v projections, rotary embeddings from the rows' document positions,
// ContextParallel::attention, output projection) and RMSNorm → SwiGLU MLP, a final RMSNorm and the
// output head. Every rank holds all parameters; its input is its shard of the packed sequence.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

#include "parallel/context_parallel.h"
#include "train/attention_clock.h"
#include "train/options.h"

namespace longhaul::train {

class Transformer : public torch::nn::Module {
 public:
  // Parameters are drawn from a generator seeded with options.seed: equal on every rank and
  // thread, whatever else uses torch's default generator.
  explicit Transformer(ModelOptions options);

  // tokens int64 [Tl] (this rank's rows of plan) → logits float32 [Tl, vocab]. A collective over
  // cp's group (one attention per layer; as many again in backward, twice with checkpointing).
  at::Tensor forward(const at::Tensor& tokens, ContextParallel& cp, const ShardPlan& plan, const Mask& mask,
                     AttentionClock* clock = nullptr);

  const ModelOptions& options() const { return opt_; }
  // Parameters in registration order (the order of checkpoints and of the gradient buffer).
  std::vector<std::pair<std::string, at::Tensor>> ordered_parameters() const;
  int64_t num_parameters() const;

 private:
  struct Layer {
    at::Tensor norm1, wq, wk, wv, wo, norm2, w1, w3, w2;
  };
  at::Tensor block(const Layer& l, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                   ContextParallel& cp, const ShardPlan& plan, const Mask& mask, AttentionClock* clock) const;

  ModelOptions opt_;
  at::Tensor embed_, norm_f_, head_;
  std::vector<Layer> layers_;
  std::vector<std::pair<std::string, at::Tensor>> ordered_;
};

}  // namespace longhaul::train

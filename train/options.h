// Options of `longhaul train`: the model's shape, the optimiser and the run.
#pragma once

#include <cstdint>
#include <string>

#include "data/curriculum.h"
#include "data/decomposition.h"
#include "parallel/options.h"
#include "train/precision.h"

namespace longhaul::train {

struct ModelOptions {
  int64_t vocab = 257;
  int64_t dim = 64;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 4;   // divides heads (GQA when smaller)
  int64_t mlp_hidden = 0; // 0: 8/3 · dim rounded up to a multiple of 16 (SwiGLU)
  double rope_theta = 10000;
  double init_std = 0.02;
  bool checkpoint_blocks = false;  // recompute each block in backward (activation checkpointing)
  uint64_t seed = 0;               // parameter initialisation
  Precision precision = Precision::Fp32;  // --dtype: master and compute dtypes (train/precision.h)

  int64_t head_dim() const { return dim / heads; }
  int64_t hidden() const { return mlp_hidden > 0 ? mlp_hidden : (8 * dim / 3 + 15) / 16 * 16; }
  void validate() const;  // InvalidArgument naming the bad size
  // "vocab=257 dim=64 layers=2 heads=4 kv_heads=4 hidden=176": checkpoints must match it exactly.
  std::string shape() const;
};

struct OptimOptions {
  double lr = 3e-3;
  double min_lr_ratio = 0.1;  // cosine decays to lr · min_lr_ratio at total_steps
  int64_t warmup = 20;
  int64_t total_steps = 1000;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;
  double clip = 1.0;  // global gradient norm; <= 0: no clipping
  // A step whose loss is NaN or infinite is never applied: by default training stops with a
  // NumericalError; with skip_nonfinite the step is dropped (gradients zeroed, no update) and
  // training goes on.
  bool skip_nonfinite = false;
};

// Where the step plans come from.
enum class SamplerKind { DD, ConcatChunk, ConcatChunkDocMask };
SamplerKind sampler_from_string(const std::string& name);  // dd, concat, concat_docmask
// A CP degree as the tools take it: "auto" (TrainOptions::kCpAuto) or a positive integer; anything
// else is an InvalidArgument naming `flag` and the value.
int cp_degree_from_string(const std::string& value, const std::string& flag);
const char* to_string(SamplerKind k);
// InvalidArgument unless micro_batches >= 1 divides tokens_per_step.
void check_micro_batches(int micro_batches, int64_t tokens_per_step);

struct TrainOptions {
  ModelOptions model;
  OptimOptions optim;
  // cpu, cuda (this thread's current GPU: longhaul::init makes it local_rank % devices) or cuda:N
  // (train/device.h). Everything the step computes lives there; scalars reduced over the world
  // (target counts, loss sums, the stop flag) go through the host backend as CPU tensors.
  std::string device = "cpu";
  // CP group size of every step (the rest of the world is data parallel), or kCpAuto: each
  // bucket's degree chosen by the planner (parallel/bucket_planner.h, train/degree_schedule.h).
  static constexpr int kCpAuto = 0;
  int cp = 1;
  Options cp_options;  // strategy, layout (inside every CP group)
  // --cp auto's cost-model inputs; every rank must give the same (the table is checked).
  double memory_gib = 0;          // per rank, one attention layer's peak; 0 = no limit
  std::string network = "this-machine";  // planner network preset
  double kernel_gflops = 0;       // attention fwd+bwd rate per rank; 0 = measured on every rank at start, the slowest taken
  double dense_gflops = 0;        // the model's rate outside attention per rank; 0 = measured likewise
  // The attention mask: a family of masks::make_packed on each pass's sequences and documents (no
  // sequence sees another; causal_document: each document causal on itself); its parameters
  // (window w, prefix, block; global tokens).
  std::string mask = "causal_document";
  // The head and the loss run over chunks of rows whose logits take at most this much (in the
  // loss dtype), so a pass never holds its [tokens, vocab] logits whole (linear_cross_entropy.h);
  // 0: the plain head (logits whole, torch's cross-entropy).
  int64_t loss_chunk_bytes = int64_t(256) << 20;
  int64_t mask_param = 0, mask_param2 = 0;
  SamplerKind sampler = SamplerKind::DD;
  data::BucketRange buckets{6, 9};  // DD buckets; concat-and-chunk uses 2^max_log2
  data::Curriculum curriculum = data::Curriculum::GrowP2;
  int cycles = 8;
  int64_t tokens_per_step = 4096;  // per step over the whole world (DD's b)
  // Gradient accumulation: each rank runs its share of a step in this many passes, one after the
  // other, and their gradients add up before the one update (a group whose share holds fewer
  // sequences runs one pass per sequence). The maths of a step does not change, only what a rank
  // holds at once. Divides tokens_per_step (check_micro_batches).
  int micro_batches = 1;
  uint64_t seed = 0;               // data order
};

}  // namespace longhaul::train

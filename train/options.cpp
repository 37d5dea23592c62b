#include "train/options.h"

#include <cmath>

#include "core/enum_names.h"
#include "core/errors.h"

namespace longhaul::train {

void ModelOptions::validate() const {
  LH_CHECK(vocab > 1 && dim > 0 && layers > 0 && heads > 0 && kv_heads > 0, "model: vocab, dim, layers, heads and ",
           "kv_heads must be positive (got ", shape(), ")");
  LH_CHECK(dim % heads == 0, "model: dim ", dim, " must be divisible by heads ", heads);
  LH_CHECK(heads % kv_heads == 0, "model: heads ", heads, " must be divisible by kv_heads ", kv_heads);
  LH_CHECK(head_dim() % 2 == 0, "model: head dim ", head_dim(), " must be even (rotary embeddings)");
  LH_CHECK(std::isfinite(rope_theta) && rope_theta > 1, "model: rope_theta ", rope_theta,
           " must be a finite number > 1 (the rotary base; 10000 is the usual one)");
}

std::string ModelOptions::shape() const {
  return detail::str_cat("vocab=", vocab, " dim=", dim, " layers=", layers, " heads=", heads, " kv_heads=", kv_heads,
                         " hidden=", hidden());
}

int cp_degree_from_string(const std::string& v, const std::string& flag) {
  if (v == "auto") return TrainOptions::kCpAuto;
  size_t used = 0;
  int c = 0;
  try {
    c = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  LH_CHECK(used == v.size() && c >= 1, flag, " takes a positive number of ranks or auto, got '", v, "'");
  return c;
}

SamplerKind sampler_from_string(const std::string& name) {
  return enum_from_string(name, {SamplerKind::DD, SamplerKind::ConcatChunk, SamplerKind::ConcatChunkDocMask}, "sampler");
}

const char* to_string(SamplerKind k) {
  switch (k) {
    case SamplerKind::DD: return "dd";
    case SamplerKind::ConcatChunk: return "concat";
    case SamplerKind::ConcatChunkDocMask: return "concat_docmask";
  }
  return "?";
}

void check_micro_batches(int micro_batches, int64_t tokens_per_step) {
  LH_CHECK(micro_batches >= 1 && tokens_per_step % micro_batches == 0, "train: --micro-batches ", micro_batches,
           " must be a positive divisor of --tokens-per-step ", tokens_per_step,
           " (each pass holds tokens_per_step / micro_batches tokens over the world)");
}

}  // namespace longhaul::train

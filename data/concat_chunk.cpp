#include "data/concat_chunk.h"

#include <numeric>

#include "data/rng.h"
#include "data/state_text.h"
#include "data/tokens_per_step.h"
#include "core/errors.h"

namespace longhaul::data {

ConcatChunkSampler::ConcatChunkSampler(const std::vector<uint64_t>& offsets, ConcatChunkOptions o) : opt_(o) {
  LH_CHECK(!offsets.empty(), "ConcatChunkSampler: doc_offsets is empty, expected [0, ..., N]");
  LH_CHECK(o.seq_len >= 1, "ConcatChunkSampler: sequence length must be >= 1, got ", o.seq_len);
  LH_CHECK(o.dp_size >= 1 && o.dp_rank >= 0 && o.dp_rank < o.dp_size, "ConcatChunkSampler: data-parallel rank ",
           o.dp_rank, " outside [0, dp_size = ", o.dp_size, ")");
  check_tokens_per_step("ConcatChunkSampler", o.tokens_per_step, o.dp_size, o.seq_len, "L");
  tokens_ = static_cast<int64_t>(offsets.back());
  tail_ = tokens_ % o.seq_len;
  order_.resize(tokens_ / o.seq_len);
  std::iota(order_.begin(), order_.end(), int64_t(0));
  if (o.shuffle) {
    SplitMix64 g{mix64(o.seed ^ 0xc0ca7c4a11ULL)};
    shuffle(order_, g);
  }
}

std::optional<StepPlan> ConcatChunkSampler::next() {
  const int64_t k = opt_.tokens_per_step / opt_.seq_len, per_rank = k / opt_.dp_size;
  if (step_ >= steps_per_epoch()) return std::nullopt;
  StepPlan plan;
  plan.step = step_;
  plan.seq_len = opt_.seq_len;
  plan.doc_masking = opt_.doc_masking;
  const int64_t first = step_ * k + per_rank * opt_.dp_rank;
  for (int64_t c = first; c < first + per_rank; ++c) plan.sequences.push_back({order_[c] * opt_.seq_len, opt_.seq_len});
  ++step_;
  return plan;
}

uint64_t ConcatChunkSampler::fingerprint() const {
  uint64_t h = mix64(static_cast<uint64_t>(tokens_));
  for (uint64_t v : {uint64_t(opt_.seq_len), uint64_t(opt_.tokens_per_step), uint64_t(opt_.dp_size),
                     uint64_t(opt_.doc_masking), uint64_t(opt_.shuffle), opt_.seed})
    h = mix64(h ^ v);
  return h;
}

NamedOptions ConcatChunkSampler::named_options() const {
  return {{"seq_len", opt_.seq_len}, {"tokens_per_step", opt_.tokens_per_step}, {"dp_size", opt_.dp_size},
          {"doc_masking", opt_.doc_masking}, {"shuffle", opt_.shuffle}, {"seed", static_cast<int64_t>(opt_.seed)}};
}

std::string ConcatChunkSampler::save_state() const {
  return StateWriter("concat-chunk")
      .put("fingerprint", static_cast<int64_t>(fingerprint()))
      .put_options(named_options())
      .put("step", step_)
      .str();
}

void ConcatChunkSampler::restore_state(const std::string& text) {
  StateReader r(text, "concat-chunk");
  r.expect_options("ConcatChunkSampler", named_options());
  LH_CHECK(static_cast<uint64_t>(r.get("fingerprint")) == fingerprint(),
           "ConcatChunkSampler: the saved state belongs to another data set (same options: sequence length, tokens "
           "per step, data-parallel size, document masking, shuffle, seed)");
  const int64_t step = r.get("step");
  LH_CHECK(step >= 0 && step <= steps_per_epoch(), "ConcatChunkSampler: saved step ", step, " outside [0, ",
           steps_per_epoch(), "]");
  step_ = step;
}

}  // namespace longhaul::data

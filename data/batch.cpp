#include "data/batch.h"

#include <algorithm>

#include "data/format.h"
#include "core/errors.h"

namespace longhaul::data {

SequenceView Batch::sequence(int64_t j) const {
  LH_CHECK(j >= 0 && j < num_sequences(), "Batch::sequence: index ", j, " outside [0, ", num_sequences(), ")");
  const int64_t L = plan.seq_len, b = j * L, e = b + L;
  SequenceView v{tokens.data() + b, targets.data() + b, positions.data() + b, L, {}};
  for (int64_t c : cu_seqlens)
    if (c >= b && c <= e) v.cu_seqlens.push_back(c - b);
  return v;
}

Batch build_batch(TokenSource& source, StepPlan plan) {
  const auto& offsets = source.doc_offsets();
  const int64_t n_tokens = source.num_tokens();
  Batch batch;
  const int64_t total = static_cast<int64_t>(plan.sequences.size()) * plan.seq_len;
  batch.tokens.resize(total);
  batch.targets.resize(total);
  batch.positions.resize(total);
  batch.cu_seqlens.push_back(0);
  std::vector<int32_t> buf;
  int64_t at = 0;
  for (const SeqSlice& s : plan.sequences) {
    LH_CHECK(s.length == plan.seq_len && s.start >= 0 && s.start + s.length <= n_tokens, "build_batch: sequence [",
             s.start, ", ", s.start + s.length, ") is not a slice of length ", plan.seq_len, " inside the ", n_tokens,
             " tokens of ", source.describe());
    const int64_t n = s.length + (s.start + s.length < n_tokens ? 1 : 0);  // one more for the last target
    buf.resize(n);
    source.read(s.start, n, buf.data());
    std::copy_n(buf.begin(), s.length, batch.tokens.begin() + at);
    // The document holding s.start: the last d with offsets[d] <= start (skips empty documents).
    size_t d = std::upper_bound(offsets.begin(), offsets.end(), uint64_t(s.start)) - offsets.begin() - 1;
    int32_t pos = 0;
    for (int64_t t = 0; t < s.length; ++t) {
      const uint64_t g = uint64_t(s.start + t);
      while (offsets[d + 1] <= g) ++d;  // g entered the next (non-empty) document
      if (t > 0 && g == offsets[d] && plan.doc_masking) {
        batch.cu_seqlens.push_back(at + t);
        pos = 0;
      }
      batch.positions[at + t] = pos++;
      batch.targets[at + t] = g + 1 < offsets[d + 1] ? buf[t + 1] : kIgnoreTarget;
    }
    at += s.length;
    batch.cu_seqlens.push_back(at);
  }
  batch.plan = std::move(plan);
  return batch;
}

}  // namespace longhaul::data

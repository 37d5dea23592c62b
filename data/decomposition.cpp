#include "data/decomposition.h"

#include "data/rng.h"
#include "core/errors.h"

namespace longhaul::data {

void BucketRange::validate() const {
  LH_CHECK(min_log2 >= 0 && min_log2 <= max_log2 && max_log2 <= 40, "bucket range 2^", min_log2, "…2^", max_log2,
           " is invalid: expected 0 <= m <= M <= 40");
}

std::vector<PieceCut> decompose_document(int64_t doc_start, int64_t length, const BucketRange& range) {
  std::vector<PieceCut> cuts;
  int64_t at = doc_start;
  const int64_t big = range.max_len();
  for (int64_t k = 0; k < length / big; ++k, at += big) cuts.push_back({at, range.max_log2});
  const int64_t rest = length % big;
  for (int i = range.max_log2 - 1; i >= range.min_log2; --i) {
    if (rest & (int64_t(1) << i)) {
      cuts.push_back({at, i});
      at += int64_t(1) << i;
    }
  }
  return cuts;
}

Decomposition::Decomposition(const std::vector<uint64_t>& offsets, BucketRange range) : range_(range) {
  range.validate();
  LH_CHECK(!offsets.empty() && offsets.front() == 0, "Decomposition: doc_offsets must start with 0 (got ",
           offsets.empty() ? std::string("no offsets") : std::to_string(offsets.front()), ")");
  buckets_.resize(range.count());
  num_docs_ = static_cast<int64_t>(offsets.size()) - 1;
  input_tokens_ = static_cast<int64_t>(offsets.back());
  // Sizes first, so each bucket is allocated once.
  std::vector<int64_t> sizes(range.count(), 0);
  for (int64_t d = 0; d < num_docs_; ++d) {
    LH_CHECK(offsets[d + 1] >= offsets[d], "Decomposition: doc_offsets decrease at document ", d, " (",
             offsets[d], " then ", offsets[d + 1], ")");
    const int64_t l = static_cast<int64_t>(offsets[d + 1] - offsets[d]);
    sizes.back() += l / range.max_len();
    for (int i = range.min_log2; i < range.max_log2; ++i) sizes[i - range.min_log2] += (l % range.max_len() >> i) & 1;
  }
  for (int b = 0; b < range.count(); ++b) buckets_[b].reserve(sizes[b]);
  for (int64_t d = 0; d < num_docs_; ++d) {
    const int64_t l = static_cast<int64_t>(offsets[d + 1] - offsets[d]);
    empty_docs_ += l == 0;
    short_docs_ += l < range.min_len();
    long_docs_ += l > range.max_len();
    dropped_tokens_ += l % range.min_len();
    for (const auto& c : decompose_document(static_cast<int64_t>(offsets[d]), l, range))
      buckets_[c.log2_len - range.min_log2].push_back({c.start, d});
  }
}

const std::vector<Piece>& Decomposition::bucket(int log2_len) const {
  LH_CHECK(log2_len >= range_.min_log2 && log2_len <= range_.max_log2, "Decomposition: bucket 2^", log2_len,
           " outside the range 2^", range_.min_log2, "…2^", range_.max_log2);
  return buckets_[log2_len - range_.min_log2];
}

int64_t Decomposition::num_pieces() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += static_cast<int64_t>(b.size());
  return n;
}

uint64_t Decomposition::fingerprint() const {
  uint64_t h = mix64(static_cast<uint64_t>(range_.min_log2) * 64 + range_.max_log2);
  h = mix64(h ^ static_cast<uint64_t>(input_tokens_));
  for (const auto& b : buckets_) h = mix64(h ^ b.size());
  return h;
}

}  // namespace longhaul::data

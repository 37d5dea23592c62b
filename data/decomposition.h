// Dataset decomposition (Pouransari et al. 2024, arXiv 2405.13226): every document is cut, largest piece first, into pieces
// whose lengths are powers of two in [2^m, 2^M]; bucket D_i holds the pieces of length 2^i. A
// piece never crosses a document; the l mod 2^m tokens left at the end of a document are dropped
// and counted. Built in memory from the document offsets in O(documents + pieces); nothing is
// written next to (or into) the store.
#pragma once

#include <cstdint>
#include <vector>

namespace longhaul::data {

// Bucket range [2^min_log2, 2^max_log2] (defaults 256…8192 as in the paper).
struct BucketRange {
  int min_log2 = 8;
  int max_log2 = 13;
  void validate() const;  // 0 <= m <= M <= 40, else InvalidArgument
  int count() const { return max_log2 - min_log2 + 1; }
  int64_t min_len() const { return int64_t(1) << min_log2; }
  int64_t max_len() const { return int64_t(1) << max_log2; }
};

// One piece: tokens [start, start + 2^log2_len) of the store's stream, inside document `doc`.
struct Piece {
  int64_t start = 0;
  int64_t doc = 0;
};

// The pieces of one document of length `length` starting at `doc_start`, largest first, adjacent,
// in document order: floor(l / 2^M) + popcount((l mod 2^M) >> m) of them.
struct PieceCut {
  int64_t start;
  int log2_len;
};
std::vector<PieceCut> decompose_document(int64_t doc_start, int64_t length, const BucketRange& range);

class Decomposition {
 public:
  // offsets: the store's doc_offsets ([0, ..., N], non-decreasing).
  Decomposition(const std::vector<uint64_t>& offsets, BucketRange range);

  const BucketRange& range() const { return range_; }
  // Pieces of bucket log2_len (m <= log2_len <= M), in document order.
  const std::vector<Piece>& bucket(int log2_len) const;
  int64_t bucket_size(int log2_len) const { return static_cast<int64_t>(bucket(log2_len).size()); }
  int64_t num_pieces() const;
  bool empty() const { return num_pieces() == 0; }

  int64_t num_documents() const { return num_docs_; }
  int64_t input_tokens() const { return input_tokens_; }
  int64_t kept_tokens() const { return input_tokens_ - dropped_tokens_; }
  // Tokens at the ends of documents that fit no bucket (sum of l mod 2^m).
  int64_t dropped_tokens() const { return dropped_tokens_; }
  // Documents of length 0, and documents shorter than 2^m (every token dropped; empty ones included).
  int64_t empty_documents() const { return empty_docs_; }
  int64_t short_documents() const { return short_docs_; }
  // Documents longer than 2^M (cut into several 2^M pieces).
  int64_t long_documents() const { return long_docs_; }
  // A hash of the range and the bucket sizes: samplers check that a saved state matches.
  uint64_t fingerprint() const;

 private:
  BucketRange range_;
  std::vector<std::vector<Piece>> buckets_;
  int64_t num_docs_ = 0, input_tokens_ = 0, dropped_tokens_ = 0;
  int64_t empty_docs_ = 0, short_docs_ = 0, long_docs_ = 0;
};

}  // namespace longhaul::data

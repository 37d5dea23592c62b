#include "data/token_source.h"

#include <algorithm>

#include "core/errors.h"

namespace longhaul::data {

MemoryTokenSource::MemoryTokenSource(int64_t vocab_size, int64_t eos_id) : vocab_(vocab_size), eos_(eos_id) {
  LH_CHECK(vocab_size >= 1, "MemoryTokenSource: vocab_size must be >= 1, got ", vocab_size);
  LH_CHECK(eos_id >= 0 && eos_id < vocab_size, "MemoryTokenSource: eos_id ", eos_id, " must lie in [0, vocab_size = ",
           vocab_size, ")");
}

void MemoryTokenSource::add_document(const std::vector<int32_t>& tokens) {
  // As the HDF5 store's writer: a token outside the vocabulary would index past the embedding.
  for (size_t i = 0; i < tokens.size(); ++i)
    LH_CHECK(tokens[i] >= 0 && tokens[i] < vocab_, "MemoryTokenSource: token ", tokens[i], " at position ", i,
             " of document ", offsets_.size() - 1, " lies outside [0, vocab_size = ", vocab_, ")");
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  offsets_.push_back(tokens_.size());
}

MemoryTokenSource MemoryTokenSource::synthetic(const std::vector<int64_t>& lengths, int64_t vocab_size,
                                               int64_t eos_id) {
  MemoryTokenSource s(vocab_size, eos_id);
  int64_t total = 0;
  for (int64_t l : lengths) {
    LH_CHECK(l >= 0, "MemoryTokenSource::synthetic: document length ", l, " is negative");
    total += l;
  }
  s.tokens_.reserve(total);
  for (int64_t l : lengths) {
    for (int64_t i = 0; i < l; ++i) {
      const int64_t t = static_cast<int64_t>(s.tokens_.size());
      s.tokens_.push_back(static_cast<int32_t>(i + 1 == l ? eos_id : t % eos_id));
    }
    s.offsets_.push_back(s.tokens_.size());
  }
  return s;
}

void MemoryTokenSource::read(int64_t begin, int64_t count, int32_t* out) {
  LH_CHECK(begin >= 0 && count >= 0 && begin + count <= num_tokens(), "MemoryTokenSource::read: range [", begin,
           ", ", begin + count, ") outside the ", num_tokens(), " tokens of the store");
  std::copy_n(tokens_.begin() + begin, count, out);
}

std::string MemoryTokenSource::describe() const {
  return "memory store (" + std::to_string(num_documents()) + " documents, " + std::to_string(num_tokens()) +
         " tokens)";
}

std::vector<int64_t> document_lengths(const std::vector<uint64_t>& offsets) {
  std::vector<int64_t> lengths;
  lengths.reserve(offsets.empty() ? 0 : offsets.size() - 1);
  for (size_t d = 0; d + 1 < offsets.size(); ++d) lengths.push_back(static_cast<int64_t>(offsets[d + 1] - offsets[d]));
  return lengths;
}

}  // namespace longhaul::data

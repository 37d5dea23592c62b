// Where the data module reads tokens from: an interface over a document store, so that the
// decomposition, the samplers and the batch builder work the same on an HDF5 file and on memory
// (tests, builds without HDF5).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace longhaul::data {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // Document offsets into the token stream: [0, ..., num_tokens()], non-decreasing.
  virtual const std::vector<uint64_t>& doc_offsets() const = 0;
  // Copies tokens [begin, begin + count) of the stream into out. Not thread-safe: one caller at a
  // time (the prefetching loader's thread while it runs).
  virtual void read(int64_t begin, int64_t count, int32_t* out) = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t eos_id() const = 0;
  virtual std::string describe() const = 0;

  int64_t num_documents() const { return static_cast<int64_t>(doc_offsets().size()) - 1; }
  int64_t num_tokens() const { return static_cast<int64_t>(doc_offsets().back()); }
  int64_t doc_length(int64_t d) const { return static_cast<int64_t>(doc_offsets()[d + 1] - doc_offsets()[d]); }
};

// Documents held in memory.
class MemoryTokenSource : public TokenSource {
 public:
  MemoryTokenSource(int64_t vocab_size, int64_t eos_id);
  // Appends a document (tokens as given; add the EOS yourself if you want one).
  void add_document(const std::vector<int32_t>& tokens);
  // A store of documents with the given lengths whose tokens are a function of their position
  // (token at global offset t = t mod vocab, the last of each document = EOS): for tests.
  static MemoryTokenSource synthetic(const std::vector<int64_t>& lengths, int64_t vocab_size = 257,
                                     int64_t eos_id = 256);

  const std::vector<uint64_t>& doc_offsets() const override { return offsets_; }
  void read(int64_t begin, int64_t count, int32_t* out) override;
  int64_t vocab_size() const override { return vocab_; }
  int64_t eos_id() const override { return eos_; }
  std::string describe() const override;

 private:
  int64_t vocab_, eos_;
  std::vector<int32_t> tokens_;
  std::vector<uint64_t> offsets_{0};
};

// Lengths of the documents of a store (doc_offsets differences).
std::vector<int64_t> document_lengths(const std::vector<uint64_t>& offsets);

}  // namespace longhaul::data

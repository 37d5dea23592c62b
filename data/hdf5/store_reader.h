// Reads a token store (data/format.h): random access to any document or token range through
// HDF5's chunk cache. Opening validates the whole contract — format and version attributes,
// dataset types, and doc_offsets against the token count — and names what is wrong. The offsets
// are held in memory (8 bytes per document); tokens are read on demand.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/hdf5/store_verify.h"
#include "data/token_source.h"

namespace longhaul::data {

struct StoreReaderOptions {
  size_t chunk_cache_bytes = size_t(64) << 20;  // decompressed chunks of /tokens kept in memory
  // Read the whole file in a child process before opening it here (store_verify.h), so crafted
  // bytes that crash libhdf5 itself are refused with a named error: once per file by default.
  // Costs one full read when it runs.
  StoreVerify verify = StoreVerify::Once;
  StoreVerifyOptions verify_options;  // the verifying child's deadline
};

class TokenStoreReader : public TokenSource {
 public:
  // Throws InvalidArgument naming the file and the problem for anything wrong with it: missing,
  // wrong format/version/types, inconsistent offsets, or HDF5 cannot open or read it (corrupt,
  // truncated). read() and document() likewise.
  explicit TokenStoreReader(const std::string& path, StoreReaderOptions options = {});
  ~TokenStoreReader() override;

  const std::vector<uint64_t>& doc_offsets() const override { return offsets_; }
  void read(int64_t begin, int64_t count, int32_t* out) override;
  int64_t vocab_size() const override { return vocab_; }
  int64_t eos_id() const override { return eos_; }
  std::string describe() const override;

  std::vector<int32_t> document(int64_t d);
  const std::string& tokenizer() const { return tokenizer_; }
  const std::string& path() const { return path_; }
  int token_bytes() const { return token_bytes_; }

 private:
  struct Files;
  std::unique_ptr<Files> h_;
  std::string path_, tokenizer_;
  int64_t vocab_ = 0, eos_ = 0;
  int token_bytes_ = 2;
  std::vector<uint64_t> offsets_;
  std::vector<uint16_t> narrow_;  // scratch for uint16 reads
};

}  // namespace longhaul::data

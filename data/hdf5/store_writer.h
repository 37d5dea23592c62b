// Writes a token store (data/format.h) document by document with bounded memory: tokens and
// offsets are buffered and appended to extendible, chunked datasets. The attributes are written by
// close(), so a file whose writer never finished is refused by the reader ("no format attribute").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace longhaul::data {

struct StoreMeta {
  std::string tokenizer = "bytes";
  int64_t vocab_size = 257;
  int64_t eos_id = 256;
};

struct StoreWriterOptions {
  int64_t chunk_tokens = int64_t(1) << 15;   // HDF5 chunk of /tokens (and of /doc_offsets)
  int deflate_level = 1;                     // 0: no compression; 1…9: shuffle + deflate at that level (Fletcher-32 always)
  int64_t buffer_tokens = int64_t(1) << 20;  // tokens held before an append to the file
};

class TokenStoreWriter {
 public:
  // Creates (or truncates) the file. Tokens are uint16 when vocab_size <= 65536, else uint32.
  TokenStoreWriter(const std::string& path, StoreMeta meta, StoreWriterOptions options = {});
  ~TokenStoreWriter();  // without close(): the file is left unfinished (and unreadable as a store)
  TokenStoreWriter(const TokenStoreWriter&) = delete;
  TokenStoreWriter& operator=(const TokenStoreWriter&) = delete;

  // Appends tokens to the current document; each must lie in [0, vocab_size).
  void append(const int32_t* tokens, int64_t n);
  // Ends the current document (an empty one is allowed: doc_offsets repeats an offset).
  void end_document();
  void add_document(const std::vector<int32_t>& tokens) {
    append(tokens.data(), static_cast<int64_t>(tokens.size()));
    end_document();
  }
  // Flushes the buffers, writes the attributes and closes the file. A document still open is
  // ended first.
  void close();

  int64_t documents() const { return docs_; }
  int64_t tokens() const { return tokens_; }
  int token_bytes() const { return token_bytes_; }

 private:
  void flush_tokens();
  void flush_offsets();
  struct Files;
  std::unique_ptr<Files> h_;
  std::string path_;
  StoreMeta meta_;
  StoreWriterOptions opt_;
  int token_bytes_ = 2;
  std::vector<uint32_t> tok_buf_;
  std::vector<uint64_t> off_buf_;
  int64_t tokens_ = 0, docs_ = 0, tokens_written_ = 0, offsets_written_ = 0, doc_begin_ = 0;
  bool closed_ = false;
};

}  // namespace longhaul::data

// Tokenizers for `longhaul prep`. The default is bytes: token = byte value (0…255), EOS = 256,
// vocab 257; every document ends with EOS.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace longhaul::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t eos_id() const = 0;
  // Appends the tokens of n bytes of text to out. Stateless across calls: a document may be
  // encoded in blocks (a byte-level tokenizer only).
  virtual void encode(const char* text, size_t n, std::vector<int32_t>& out) const = 0;
};

class ByteTokenizer : public Tokenizer {
 public:
  std::string name() const override { return "bytes"; }
  int64_t vocab_size() const override { return 257; }
  int64_t eos_id() const override { return 256; }
  void encode(const char* text, size_t n, std::vector<int32_t>& out) const override;
};

// By name: "bytes" (the only one today).
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name);

}  // namespace longhaul::data

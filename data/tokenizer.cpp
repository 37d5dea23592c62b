#include "data/tokenizer.h"

#include "core/errors.h"

namespace longhaul::data {

void ByteTokenizer::encode(const char* text, size_t n, std::vector<int32_t>& out) const {
  const size_t at = out.size();
  out.resize(at + n);
  const auto* u = reinterpret_cast<const unsigned char*>(text);
  for (size_t i = 0; i < n; ++i) out[at + i] = u[i];
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name) {
  if (name == "bytes") return std::make_unique<ByteTokenizer>();
  throw InvalidArgument("unknown tokenizer '" + name + "', expected: bytes");
}

}  // namespace longhaul::data

// libFuzzer target: `longhaul prep`'s JSON-lines field reader and the byte tokenizer on arbitrary
// lines. The reader returns a status for anything (no exception, no crash); a decoded value is
// valid UTF-8 and tokenizes to one token per byte.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <string>

#include "data/json_field.h"
#include "data/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string field = in.ConsumeRandomLengthString(16);
  const std::string line = in.ConsumeRemainingBytesAsString();
  std::string value, error;
  const auto status = longhaul::data::json_string_field(line, field, value, &error);
  if (status == longhaul::data::JsonFieldStatus::Invalid && error.empty()) std::abort();  // a reason is promised
  if (status == longhaul::data::JsonFieldStatus::Ok) {
    if (value.size() > line.size()) std::abort();  // decoding never grows the text (escapes shrink)
    std::vector<int32_t> tokens;
    longhaul::data::ByteTokenizer().encode(value.data(), value.size(), tokens);
    if (tokens.size() != value.size()) std::abort();
    for (int32_t t : tokens)
      if (t < 0 || t > 255) std::abort();
  }
  return 0;
}

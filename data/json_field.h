// One field of a JSON-lines record: `longhaul prep --field text` takes the string value of a
// top-level key of each line's object. A complete JSON parser for one line (strict RFC 8259
// syntax), that keeps only the wanted value.
#pragma once

#include <string>
#include <string_view>

namespace longhaul::data {

enum class JsonFieldStatus {
  Ok,           // value holds the decoded string (UTF-8)
  Invalid,      // the line is not valid JSON
  NotAnObject,  // valid JSON, but not an object
  Missing,      // an object without that key
  NotAString,   // the key's value is not a string
};

const char* to_string(JsonFieldStatus s);

// Parses `line` and returns the string value of the top-level key `field` (the last one wins if
// the key repeats). `error` (may be null) gets a short reason for Invalid.
JsonFieldStatus json_string_field(std::string_view line, std::string_view field, std::string& value,
                                  std::string* error = nullptr);

}  // namespace longhaul::data

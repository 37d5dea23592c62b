#include "data/json_field.h"

#include <cstdio>

namespace longhaul::data {

const char* to_string(JsonFieldStatus s) {
  switch (s) {
    case JsonFieldStatus::Ok: return "ok";
    case JsonFieldStatus::Invalid: return "invalid JSON";
    case JsonFieldStatus::NotAnObject: return "not a JSON object";
    case JsonFieldStatus::Missing: return "field missing";
    case JsonFieldStatus::NotAString: return "field is not a string";
  }
  return "?";
}

namespace {

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}
  std::string error;

  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool at_end() {
    ws();
    return i_ == s_.size();
  }
  char peek() { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool fail(const char* why) {
    if (error.empty()) error = std::string(why) + " at byte " + std::to_string(i_);
    return false;
  }

  // A string at i_ (which is '"'); decoded into out when out != nullptr.
  bool string(std::string* out) {
    ++i_;
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in a string");
      if (c != '\\') {
        if (out) out->push_back(c);
        continue;
      }
      if (i_ >= s_.size()) break;
      const char e = s_[i_++];
      char plain = 0;
      switch (e) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00) {  // a high surrogate needs its low half
            uint32_t lo = 0;
            if (s_.substr(i_, 2) != "\\u") return fail("lone surrogate");
            i_ += 2;
            if (!hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            return fail("lone surrogate");
          }
          if (out) utf8(cp, *out);
          continue;
        }
        default: return fail("bad escape");
      }
      if (out) out->push_back(plain);
    }
    return fail("unterminated string");
  }

  bool hex4(uint32_t& v) {
    if (i_ + 4 > s_.size()) return fail("short \\u escape");
    v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else return fail("bad \\u escape");
    }
    return true;
  }

  static void utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return fail("unknown literal");
    i_ += word.size();
    return true;
  }

  bool number() {
    const size_t b = i_;
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++i_;
    } else {
      return fail("bad number");
    }
    if (peek() == '.') {
      ++i_;
      if (!(peek() >= '0' && peek() <= '9')) return fail("bad number");
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!(peek() >= '0' && peek() <= '9')) return fail("bad number");
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    return i_ > b;
  }

  // What stands where a value should: named, not read as a number.
  bool unexpected() {
    if (i_ == s_.size()) return fail("expected a value, found the end of the line");
    const unsigned char c = static_cast<unsigned char>(s_[i_]);
    char shown[40];
    if (c >= 0x20 && c < 0x7f)
      std::snprintf(shown, sizeof shown, "'%c'", c);
    else
      std::snprintf(shown, sizeof shown, "byte 0x%02x", c);
    if (error.empty())
      error = std::string("expected a JSON value (object, array, string, number, true, false or null), found ") +
              shown + " at byte " + std::to_string(i_);
    return false;
  }

  // Any value; skipped (nothing decoded). Depth guards against stack exhaustion.
  bool value(int depth) {
    if (depth > 512) return fail("nesting deeper than 512");
    ws();
    switch (peek()) {
      case '"': return string(nullptr);
      case '{': return object(depth, {}, nullptr, nullptr);
      case '[': {
        ++i_;
        ws();
        if (peek() == ']') return ++i_, true;
        for (;;) {
          if (!value(depth + 1)) return false;
          ws();
          if (peek() == ',') { ++i_; continue; }
          if (peek() == ']') return ++i_, true;
          return fail("expected ',' or ']'");
        }
      }
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      case '-': return number();
      default:
        if (peek() >= '0' && peek() <= '9') return number();
        return unexpected();
    }
  }

  // An object; with want non-empty, the string value of key `want` goes to out (found / is_string).
  bool object(int depth, std::string_view want, bool* found, std::string* out, bool* is_string = nullptr) {
    ++i_;
    ws();
    if (peek() == '}') return ++i_, true;
    std::string key;
    for (;;) {
      ws();
      if (peek() != '"') return fail("expected a key");
      key.clear();
      if (!string(&key)) return false;
      ws();
      if (peek() != ':') return fail("expected ':'");
      ++i_;
      ws();
      if (found && key == want) {
        *found = true;
        if (peek() == '"') {
          out->clear();
          if (!string(out)) return false;
          *is_string = true;
        } else {
          if (!value(depth + 1)) return false;
          *is_string = false;
        }
      } else if (!value(depth + 1)) {
        return false;
      }
      ws();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == '}') return ++i_, true;
      return fail("expected ',' or '}'");
    }
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

JsonFieldStatus json_string_field(std::string_view line, std::string_view field, std::string& value,
                                  std::string* error) {
  Parser p(line);
  auto invalid = [&] {
    if (error) *error = p.error.empty() ? "invalid JSON" : p.error;
    return JsonFieldStatus::Invalid;
  };
  p.ws();
  if (p.peek() != '{') {
    if (!p.value(0) || !p.at_end()) return invalid();
    return JsonFieldStatus::NotAnObject;
  }
  bool found = false, is_string = false;
  if (!p.object(0, field, &found, &value, &is_string)) return invalid();
  if (!p.at_end()) {
    p.fail("trailing characters");
    return invalid();
  }
  if (!found) return JsonFieldStatus::Missing;
  return is_string ? JsonFieldStatus::Ok : JsonFieldStatus::NotAString;
}

}  // namespace longhaul::data

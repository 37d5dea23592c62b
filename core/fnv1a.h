// FNV-1a (64-bit) over bytes: the fingerprints ranks compare and files carry. The same value on
// every rank, build and platform (std::hash promises none of that).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace longhaul {

class Fnv1a {
 public:
  Fnv1a& bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * 1099511628211ull;
    return *this;
  }
  Fnv1a& text(std::string_view s) { return bytes(s.data(), s.size()); }
  // A number's 8 bytes, least significant first (the same on any host's byte order).
  Fnv1a& word(uint64_t v) {
    for (int i = 0; i < 8; ++i) h_ = (h_ ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
    return *this;
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 1469598103934665603ull;
};

}  // namespace longhaul

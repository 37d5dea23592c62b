// Document lengths by power of two: bin k counts lengths in [2^k, 2^(k+1)); empty documents apart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace longhaul::data {

class LengthHistogram {
 public:
  void add(int64_t length);
  void add_all(const std::vector<int64_t>& lengths) {
    for (int64_t l : lengths) add(l);
  }
  int64_t empty() const { return empty_; }
  // Per bin k: documents and tokens; size = highest non-empty bin + 1.
  const std::vector<int64_t>& docs() const { return docs_; }
  const std::vector<int64_t>& tokens() const { return tokens_; }
  // "[2^k, 2^(k+1))  docs  tokens  %tokens" lines.
  std::string table() const;

 private:
  int64_t empty_ = 0;
  std::vector<int64_t> docs_, tokens_;
};

}  // namespace longhaul::data

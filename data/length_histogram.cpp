#include "data/length_histogram.h"

#include <cstdio>
#include <numeric>

namespace longhaul::data {

void LengthHistogram::add(int64_t length) {
  if (length <= 0) {
    ++empty_;
    return;
  }
  const int k = 63 - __builtin_clzll(static_cast<unsigned long long>(length));
  if (static_cast<int>(docs_.size()) <= k) {
    docs_.resize(k + 1, 0);
    tokens_.resize(k + 1, 0);
  }
  ++docs_[k];
  tokens_[k] += length;
}

std::string LengthHistogram::table() const {
  const int64_t total = std::accumulate(tokens_.begin(), tokens_.end(), int64_t(0));
  std::string out = "  length range           documents        tokens  tokens%\n";
  char line[256];
  if (empty_) {
    std::snprintf(line, sizeof line, "  %-20s %10lld %13d %8.2f\n", "0 (empty)", static_cast<long long>(empty_), 0, 0.0);
    out += line;
  }
  for (size_t k = 0; k < docs_.size(); ++k) {
    if (!docs_[k]) continue;
    char range[64];
    std::snprintf(range, sizeof range, "[2^%zu, 2^%zu)", k, k + 1);
    std::snprintf(line, sizeof line, "  %-20s %10lld %13lld %8.2f\n", range, static_cast<long long>(docs_[k]),
                  static_cast<long long>(tokens_[k]), total ? 100.0 * double(tokens_[k]) / double(total) : 0.0);
    out += line;
  }
  return out;
}

}  // namespace longhaul::data

#include "data/length_mix.h"

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/offsets.h"
#include "data/rng.h"

namespace longhaul::data {

std::vector<std::string> document_length_mixes() { return {"longca_long", "longca_short"}; }

std::vector<int64_t> document_offsets_of_mix(const std::string& name, int64_t t, uint64_t seed) {
  std::vector<int64_t> cu = offsets_of(document_length_mix(name, t, seed));
  cu.erase(std::lower_bound(cu.begin(), cu.end(), t), cu.end());
  cu.push_back(t);
  return cu;
}

std::vector<int64_t> document_length_mix(const std::string& name, int64_t total_tokens, uint64_t seed) {
  LH_CHECK(name == "longca_long" || name == "longca_short", "unknown document-length mix '", name,
           "', expected longca_long or longca_short");
  LH_CHECK(total_tokens > 0, "document_length_mix: total_tokens must be > 0, got ", total_tokens);
  SplitMix64 rng{seed};
  std::vector<int64_t> out;
  const double long_share = name == "longca_long" ? 0.6 : 0.0;
  int64_t long_tokens = 0, short_tokens = 0;
  const auto long_goal = static_cast<int64_t>(long_share * double(total_tokens));
  while (long_tokens < long_goal) {  // uniform in [8K, 30K]
    const int64_t n = 8192 + static_cast<int64_t>(rng.uniform() * (30720 - 8192 + 1));
    out.push_back(n);
    long_tokens += n;
  }
  while (short_tokens < total_tokens - long_goal) {  // log-uniform in [128, 8K]
    const int64_t n = static_cast<int64_t>(std::exp(std::log(128.0) + rng.uniform() * std::log(8192.0 / 128.0)));
    out.push_back(n);
    short_tokens += n;
  }
  return out;
}

std::vector<double> bucket_token_shares(const std::vector<int64_t>& lengths, const BucketRange& range) {
  range.validate();
  std::vector<double> tokens(range.count(), 0.0);
  double kept = 0;
  for (int64_t n : lengths)
    for (const PieceCut& p : decompose_document(0, n, range)) {
      tokens[p.log2_len - range.min_log2] += double(int64_t(1) << p.log2_len);
      kept += double(int64_t(1) << p.log2_len);
    }
  for (double& t : tokens) t = kept > 0 ? t / kept : 0.0;
  return tokens;
}

}  // namespace longhaul::data

#include "data/tokens_per_step.h"

#include <algorithm>

#include "core/errors.h"

namespace longhaul::data {

void check_tokens_per_step(const std::string& who, int64_t b, int64_t dp_size, int64_t longest,
                           const std::string& longest_name) {
  const int64_t unit = dp_size * longest;
  LH_CHECK(b > 0 && b % unit == 0, who, ": tokens per step b = ", b, " must be a positive multiple of data-parallel size · ",
           longest_name, " = ", dp_size, " · ", longest, " = ", unit,
           " (so every step of every bucket splits evenly over the ranks); try b = ", std::max<int64_t>(unit, b / unit * unit));
}

}  // namespace longhaul::data

// The one rule both samplers put on tokens per step, also checked by `longhaul train` before it
// writes anything.
#pragma once

#include <cstdint>
#include <string>

namespace longhaul::data {

// b must be a positive multiple of dp_size · longest (the longest sequence: 2^M for the DD
// sampler, L for concat-and-chunk), so every step of every bucket splits evenly over the ranks.
// InvalidArgument otherwise, naming `who`, the factors (`longest_name` is "2^M" or "L") and the
// nearest valid b.
void check_tokens_per_step(const std::string& who, int64_t b, int64_t dp_size, int64_t longest,
                           const std::string& longest_name);

}  // namespace longhaul::data

// Curricula of dataset decomposition (arXiv 2405.13226): the odds with which a step draws each
// non-empty bucket, shortest first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace longhaul::data {

enum class Curriculum {
  Uniform,     // 1 : 1 : … : 1
  GrowLinear,  // n : n−1 : … : 1     (6:5:4:3:2:1 for six buckets)
  GrowP2,      // 2^(n−1) : … : 2 : 1 (32:16:8:4:2:1 for six buckets); the paper's best, with 8 cycles
  Natural,     // ∝ batches left in each bucket: a uniform shuffle of all batches of the cycle
};

const char* to_string(Curriculum c);
Curriculum curriculum_from_string(const std::string& name);  // uniform, grow_linear, grow_p2, natural

// Fixed odds of n buckets (shortest first); Natural has none (its odds follow what is left): empty.
std::vector<double> curriculum_odds(Curriculum c, int n_buckets);

}  // namespace longhaul::data

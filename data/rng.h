// A small, portable random number generator whose whole state is one integer, so a sampler's
// state saves and restores exactly (and is the same on every rank and every standard library).
#pragma once

#include <cstdint>
#include <cstddef>
#include <utility>

namespace longhaul::data {

// SplitMix64's finaliser: a good 64-bit hash.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// SplitMix64 generator.
struct SplitMix64 {
  uint64_t state = 0;
  uint64_t next() {
    state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n) (n > 0), without modulo bias worth mentioning for n << 2^64.
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }
};

// Fisher–Yates shuffle with a given generator.
template <typename Vec>
void shuffle(Vec& v, SplitMix64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = rng.below(i);
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace longhaul::data

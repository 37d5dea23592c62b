// exp for the kernels' inner loops. float: a range-reduced polynomial (max relative error about
// 2e-7 on [-87, 88], 0 below) that GCC vectorises with AVX2/FMA; std::exp's scalar calls would
// cost more than the tile GEMMs at D = 64. double: std::exp (exact checks, speed secondary).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace longhaul::cpu {

inline float fast_exp(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = std::floor(xc * kLog2e + 0.5f);
  const float f = xc - n * kLn2Hi - n * kLn2Lo;  // |f| <= ln2/2
  // exp(f) by its Taylor polynomial to degree 6 (Horner).
  float poly = 1.3888889e-3f;
  poly = poly * f + 8.3333333e-3f;
  poly = poly * f + 4.1666667e-2f;
  poly = poly * f + 1.6666667e-1f;
  poly = poly * f + 0.5f;
  poly = poly * f + 1.0f;
  poly = poly * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : poly * scale;
}

inline float exp_of(float x) { return fast_exp(x); }
inline double exp_of(double x) { return std::exp(x); }

}  // namespace longhaul::cpu

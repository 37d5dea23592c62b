// exp for the kernels' inner loops. float: a range-reduced polynomial (max relative error about
// 2e-7 on [-87, 88], 0 below) that GCC vectorises with AVX2/FMA; std::exp's scalar calls would
// cost more than the tile GEMMs at D = 64. double: std::exp (exact checks, speed secondary).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

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

#if defined(__x86_64__)
// GCC 12 reports its own _mm512_undefined_* helpers as maybe-uninitialized here (a known false
// positive in avx512fintrin.h); nothing in this function reads an undefined value.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// The same polynomial sixteen lanes at a time where the CPU has AVX-512 (chosen at run time; the
// rest of the kernels stays AVX2, x86-64-v3).
__attribute__((target("avx512f"))) inline int64_t exp_shifted_avx512(float* x, int64_t n, float shift) {
  const __m512 vshift = _mm512_set1_ps(shift), lo = _mm512_set1_ps(-87.0f), hi = _mm512_set1_ps(88.0f);
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f), half = _mm512_set1_ps(0.5f);
  const __m512 ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f);
  const __m512 c6 = _mm512_set1_ps(1.3888889e-3f), c5 = _mm512_set1_ps(8.3333333e-3f),
               c4 = _mm512_set1_ps(4.1666667e-2f), c3 = _mm512_set1_ps(1.6666667e-1f), one = _mm512_set1_ps(1.0f);
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(x + c), vshift);
    const __mmask16 keep = _mm512_cmp_ps_mask(v, lo, _CMP_GE_OQ);
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    const __m512 k = _mm512_roundscale_ps(_mm512_fmadd_ps(xc, log2e, half), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_fnmadd_ps(k, ln2lo, _mm512_fnmadd_ps(k, ln2hi, xc));
    __m512 p = _mm512_fmadd_ps(c6, f, c5);
    p = _mm512_fmadd_ps(p, f, c4);
    p = _mm512_fmadd_ps(p, f, c3);
    p = _mm512_fmadd_ps(p, f, half);
    p = _mm512_fmadd_ps(p, f, one);
    p = _mm512_fmadd_ps(p, f, one);
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
    _mm512_storeu_ps(x + c, _mm512_maskz_mul_ps(keep, p, _mm512_castsi512_ps(bits)));
  }
  return c;
}
#pragma GCC diagnostic pop
inline bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}
#endif

// x[c] = exp(x[c] - shift) over an array: fast_exp eight (or sixteen) lanes at a time (GCC does
// not vectorise the scalar form reliably once it is inlined into the kernels' loops).
inline void exp_shifted_array(float* x, int64_t n, float shift) {
  int64_t c = 0;
#if defined(__x86_64__)
  if (cpu_has_avx512()) c = exp_shifted_avx512(x, n, shift);
#endif
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 vshift = _mm256_set1_ps(shift), lo = _mm256_set1_ps(-87.0f), hi = _mm256_set1_ps(88.0f);
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f), half = _mm256_set1_ps(0.5f);
  const __m256 ln2hi = _mm256_set1_ps(0.693359375f), ln2lo = _mm256_set1_ps(-2.12194440e-4f);
  const __m256 c6 = _mm256_set1_ps(1.3888889e-3f), c5 = _mm256_set1_ps(8.3333333e-3f),
               c4 = _mm256_set1_ps(4.1666667e-2f), c3 = _mm256_set1_ps(1.6666667e-1f), one = _mm256_set1_ps(1.0f);
  for (; c + 8 <= n; c += 8) {
    const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + c), vshift);
    const __m256 underflow = _mm256_cmp_ps(v, lo, _CMP_LT_OQ);
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    const __m256 k = _mm256_floor_ps(_mm256_fmadd_ps(xc, log2e, half));
    const __m256 f = _mm256_fnmadd_ps(k, ln2lo, _mm256_fnmadd_ps(k, ln2hi, xc));
    __m256 p = _mm256_fmadd_ps(c6, f, c5);
    p = _mm256_fmadd_ps(p, f, c4);
    p = _mm256_fmadd_ps(p, f, c3);
    p = _mm256_fmadd_ps(p, f, half);
    p = _mm256_fmadd_ps(p, f, one);
    p = _mm256_fmadd_ps(p, f, one);
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    const __m256 r = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    _mm256_storeu_ps(x + c, _mm256_andnot_ps(underflow, r));
  }
#endif
  for (; c < n; ++c) x[c] = fast_exp(x[c] - shift);
}
inline void exp_shifted_array(double* x, int64_t n, double shift) {
  for (int64_t c = 0; c < n; ++c) x[c] = std::exp(x[c] - shift);
}

}  // namespace longhaul::cpu

// exp for the kernels' inner loops. float: a range-reduced polynomial (max relative error about
// 2e-7 on [-87, 88], 0 below) that GCC vectorises with AVX2/FMA; std::exp's scalar calls would
// cost more than the tile GEMMs at D = 64. double: std::exp (exact checks, speed secondary).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
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
// GCC 12 reports its own _mm512_undefined_* helpers as maybe-uninitialized in AVX-512 code (a
// known false positive in avx512fintrin.h); the functions between these two read no undefined
// value. -Wmaybe-uninitialized is GCC's alone (clang warns about the unknown name).
#ifdef __clang__
#define LONGHAUL_AVX512_UNINIT_WARNINGS_OFF \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#else
#define LONGHAUL_AVX512_UNINIT_WARNINGS_OFF                                         \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#endif
#define LONGHAUL_AVX512_UNINIT_WARNINGS_ON _Pragma("GCC diagnostic pop")

LONGHAUL_AVX512_UNINIT_WARNINGS_OFF
// The same polynomial sixteen lanes at a time where the CPU has AVX-512 (chosen at run time; the
// rest of the kernels stays AVX2, x86-64-v3). vscalefps applies 2^k in one instruction (no integer
// exponent arithmetic, no overflow for any k), so the only clamp left is the underflow one that
// maps masked (-inf) entries to exactly 0. Processes whole vectors; returns how many elements it
// did and, when sum is given, adds their sum to it (sixteen lanes, then a fixed tree).
__attribute__((target("avx512f"))) inline int64_t exp_shifted_avx512(float* x, int64_t n, float shift, float* sum) {
  const __m512 vshift = _mm512_set1_ps(shift), lo = _mm512_set1_ps(-87.0f);
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f);
  const __m512 c6 = _mm512_set1_ps(1.3888889e-3f), c5 = _mm512_set1_ps(8.3333333e-3f),
               c4 = _mm512_set1_ps(4.1666667e-2f), c3 = _mm512_set1_ps(1.6666667e-1f), half = _mm512_set1_ps(0.5f),
               one = _mm512_set1_ps(1.0f);
  __m512 acc = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(x + c), vshift);
    const __mmask16 keep = _mm512_cmp_ps_mask(v, lo, _CMP_GE_OQ);
    const __m512 xc = _mm512_max_ps(v, lo);
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_fnmadd_ps(k, ln2lo, _mm512_fnmadd_ps(k, ln2hi, xc));  // |f| <= ln2/2
    __m512 p = _mm512_fmadd_ps(c6, f, c5);
    p = _mm512_fmadd_ps(p, f, c4);
    p = _mm512_fmadd_ps(p, f, c3);
    p = _mm512_fmadd_ps(p, f, half);
    p = _mm512_fmadd_ps(p, f, one);
    p = _mm512_fmadd_ps(p, f, one);
    const __m512 r = _mm512_maskz_scalef_ps(keep, p, k);
    _mm512_storeu_ps(x + c, r);
    acc = _mm512_add_ps(acc, r);
  }
  if (sum) *sum += _mm512_reduce_add_ps(acc);  // a fixed tree of adds (a serial chain of 16 cost as much as the exps)
  return c;
}
LONGHAUL_AVX512_UNINIT_WARNINGS_ON
// LONGHAUL_NO_AVX512=1 takes the AVX2 paths on an AVX-512 machine (the tests run them that way:
// CPUs without AVX-512 get the same results).
inline bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && !std::getenv("LONGHAUL_NO_AVX512");
  return has;
}
#endif

// x[c] = exp(x[c] - shift) over an array: fast_exp eight (or sixteen) lanes at a time (GCC does
// not vectorise the scalar form reliably once it is inlined into the kernels' loops). With
// kSum, returns the sum of the new values, added in an order fixed by n alone (the forward's
// softmax denominators, in the same pass).
template <bool kSum>
inline float exp_shifted_array(float* x, int64_t n, float shift) {
  int64_t c = 0;
  float sum = 0;
#if defined(__x86_64__)
  if (cpu_has_avx512()) c = exp_shifted_avx512(x, n, shift, kSum ? &sum : nullptr);
#endif
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 vshift = _mm256_set1_ps(shift), lo = _mm256_set1_ps(-87.0f), hi = _mm256_set1_ps(88.0f);
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f), half = _mm256_set1_ps(0.5f);
  const __m256 ln2hi = _mm256_set1_ps(0.693359375f), ln2lo = _mm256_set1_ps(-2.12194440e-4f);
  const __m256 c6 = _mm256_set1_ps(1.3888889e-3f), c5 = _mm256_set1_ps(8.3333333e-3f),
               c4 = _mm256_set1_ps(4.1666667e-2f), c3 = _mm256_set1_ps(1.6666667e-1f), one = _mm256_set1_ps(1.0f);
  __m256 acc = _mm256_setzero_ps();
  const int64_t c8 = c;
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
    const __m256 r = _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
    _mm256_storeu_ps(x + c, r);
    if (kSum) acc = _mm256_add_ps(acc, r);
  }
  if (kSum && c > c8) {
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (int l = 0; l < 8; ++l) sum += lanes[l];
  }
#endif
  for (; c < n; ++c) {
    x[c] = fast_exp(x[c] - shift);
    if (kSum) sum += x[c];
  }
  return sum;
}
template <bool kSum>
inline double exp_shifted_array(double* x, int64_t n, double shift) {
  double sum = 0;
  for (int64_t c = 0; c < n; ++c) {
    x[c] = std::exp(x[c] - shift);
    if (kSum) sum += x[c];
  }
  return sum;
}

}  // namespace longhaul::cpu

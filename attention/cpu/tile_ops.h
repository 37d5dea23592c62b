// Elementwise work on one score tile S[nq × nk] (row-major, row stride nk), shared by the forward
// and backward kernels. Written as plain loops that vectorise (compiled with AVX2/FMA).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "attention/cpu/params.h"
#include "attention/cpu/vexp.h"

namespace longhaul::cpu {

// Max of a row over independent lanes, then a tree over the lanes; the float version uses AVX-512
// or AVX2 explicitly (GCC leaves the generic form scalar without -ffast-math). A NaN (in the row
// or in init) is the result: the kernels turn such a row into NaN, as SDPA does, instead of
// letting a max instruction drop it.
template <typename T>
inline T row_max(const T* x, int64_t n, T init) {
  T m = init;
  for (int64_t c = 0; c < n; ++c) m = (m > x[c] || m != m) ? m : x[c];
  return m;
}

#if defined(__x86_64__)
LONGHAUL_AVX512_UNINIT_WARNINGS_OFF  // the same false positive as in vexp.h
__attribute__((target("avx512f"))) inline float row_max_avx512(const float* x, int64_t n, float init) {
  __m512 a = _mm512_set1_ps(init), b = a;
  __mmask16 nan = 0;  // maxps returns its second operand when either is NaN: NaNs are counted apart
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
    nan |= _mm512_cmp_ps_mask(x0, x1, _CMP_UNORD_Q);
    a = _mm512_max_ps(a, x0);
    b = _mm512_max_ps(b, x1);
  }
  for (; c + 16 <= n; c += 16) {
    const __m512 x0 = _mm512_loadu_ps(x + c);
    nan |= _mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q);
    a = _mm512_max_ps(a, x0);
  }
  float m = nan || init != init ? std::numeric_limits<float>::quiet_NaN() : _mm512_reduce_max_ps(_mm512_max_ps(a, b));
  for (; c < n; ++c) m = (m > x[c] || m != m) ? m : x[c];
  return m;
}
LONGHAUL_AVX512_UNINIT_WARNINGS_ON
#endif
#if defined(__AVX2__)
template <>
inline float row_max<float>(const float* x, int64_t n, float init) {
#if defined(__x86_64__)
  if (cpu_has_avx512()) return row_max_avx512(x, n, init);
#endif
  __m256 a = _mm256_set1_ps(init), b = a, nan = _mm256_setzero_ps();  // NaN lanes, as above
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x0, x1, _CMP_UNORD_Q));
    a = _mm256_max_ps(a, x0);
    b = _mm256_max_ps(b, x1);
  }
  a = _mm256_max_ps(a, b);  // then a tree over the lanes
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  float m = _mm256_movemask_ps(nan) || init != init ? std::numeric_limits<float>::quiet_NaN() : _mm_cvtss_f32(h);
  for (; c < n; ++c) m = (m > x[c] || m != m) ? m : x[c];
  return m;
}
#endif
// x = exp(x - shift), in place.
template <typename T>
inline void exp_shifted(T* x, int64_t n, T shift) {
  exp_shifted_array<false>(x, n, shift);
}

// x = exp(x - shift), in place; returns Σ x (in a fixed order).
template <typename T>
inline T exp_shifted_sum(T* x, int64_t n, T shift) {
  return exp_shifted_array<true>(x, n, shift);
}

// Sets the entries the mask hides to -inf (only called on partial tiles) for query rows
// [row0, row0 + nq) against keys at positions kp[0 .. nk). Key positions come in runs of
// consecutive positions (one run for a contiguous block, two for zigzag); each row's visible keys
// are a few intervals (keys.iv), so a row costs a few fills per run. Heavily fragmented tiles
// (striped layouts) look each key up in the row's intervals.
template <typename T>
inline void mask_tile(T* s, int64_t nq, int64_t nk, const RowKeys& keys, int64_t row0, const int64_t* kp) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  int64_t runs[33];
  int n_runs = 0;
  runs[n_runs++] = 0;
  for (int64_t c = 1; c < nk && n_runs < 32; ++c)
    if (kp[c] != kp[c - 1] + 1) runs[n_runs++] = c;
  const bool fragmented = n_runs >= 32;
  if (!fragmented) {
    runs[n_runs] = nk;
    for (int64_t r = 0; r < nq; ++r) {
      T* row = s + r * nk;
      const PosInterval* iv = keys.iv.data() + keys.ptr[row0 + r];
      const PosInterval* iv_end = keys.iv.data() + keys.ptr[row0 + r + 1];
      for (int u = 0; u < n_runs; ++u) {
        const int64_t c0 = runs[u], c1 = runs[u + 1], k0 = kp[c0] - c0;  // position of column c is k0 + c
        int64_t cursor = c0;  // columns before it are done; intervals are sorted and disjoint
        for (const PosInterval* x = iv; x != iv_end && cursor < c1; ++x) {
          const int64_t a = std::clamp<int64_t>(x->lo - k0, cursor, c1);
          const int64_t b = std::clamp<int64_t>(x->hi - k0 + 1, a, c1);
          std::fill(row + cursor, row + a, neg_inf);
          cursor = std::max(cursor, b);
        }
        std::fill(row + cursor, row + c1, neg_inf);
      }
    }
    return;
  }
  for (int64_t r = 0; r < nq; ++r) {
    T* row = s + r * nk;
    const PosInterval* iv = keys.iv.data() + keys.ptr[row0 + r];
    const PosInterval* iv_end = keys.iv.data() + keys.ptr[row0 + r + 1];
    for (int64_t c = 0; c < nk; ++c) {
      // The first interval ending at or after the key, then whether it starts before it.
      const PosInterval* x =
          std::lower_bound(iv, iv_end, kp[c], [](const PosInterval& y, int64_t pos) { return y.hi < pos; });
      if (x == iv_end || x->lo > kp[c]) row[c] = neg_inf;
    }
  }
}

// P = exp(S - lse_r) per row in place; rows with lse = -inf (no visible key) become 0, rows with a
// NaN lse (the forward saw a NaN or +inf score) NaN, as in SDPA (the fast exp would give 0).
template <typename T>
inline void exp_minus_rows(T* s, int64_t nq, int64_t nk, const T* lse, int64_t lse_stride) {
  for (int64_t r = 0; r < nq; ++r) {
    T* row = s + r * nk;
    const T l = lse[r * lse_stride];
    if (l == -std::numeric_limits<T>::infinity() || l != l) {
      std::fill(row, row + nk, l == l ? T(0) : l);
      continue;
    }
    exp_shifted(row, nk, l);
  }
}

}  // namespace longhaul::cpu

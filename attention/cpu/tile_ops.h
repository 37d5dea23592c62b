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
// or AVX2 explicitly (GCC leaves the generic form scalar without -ffast-math).
template <typename T>
inline T row_max(const T* x, int64_t n, T init) {
  T m = init;
  for (int64_t c = 0; c < n; ++c) m = m > x[c] ? m : x[c];
  return m;
}

#if defined(__x86_64__)
#pragma GCC diagnostic push  // the same false positive as in vexp.h
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
__attribute__((target("avx512f"))) inline float row_max_avx512(const float* x, int64_t n, float init) {
  __m512 a = _mm512_set1_ps(init), b = a;
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    a = _mm512_max_ps(a, _mm512_loadu_ps(x + c));
    b = _mm512_max_ps(b, _mm512_loadu_ps(x + c + 16));
  }
  for (; c + 16 <= n; c += 16) a = _mm512_max_ps(a, _mm512_loadu_ps(x + c));
  float m = _mm512_reduce_max_ps(_mm512_max_ps(a, b));
  for (; c < n; ++c) m = m > x[c] ? m : x[c];
  return m;
}
#pragma GCC diagnostic pop
#endif
#if defined(__AVX2__)
template <>
inline float row_max<float>(const float* x, int64_t n, float init) {
#if defined(__x86_64__)
  if (cpu_has_avx512()) return row_max_avx512(x, n, init);
#endif
  __m256 a = _mm256_set1_ps(init), b = a;
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    a = _mm256_max_ps(a, _mm256_loadu_ps(x + c));
    b = _mm256_max_ps(b, _mm256_loadu_ps(x + c + 8));
  }
  a = _mm256_max_ps(a, b);  // then a tree over the lanes
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  float m = _mm_cvtss_f32(h);
  for (; c < n; ++c) m = m > x[c] ? m : x[c];
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

// Sets the entries the mask hides to -inf (only called on partial tiles). Key positions come in
// runs of consecutive positions (one run for a contiguous block, two per document for zigzag);
// inside a run each row's visible keys form one interval (documents, causal and window each cut
// an interval), so a row costs a few fills per run. Heavily fragmented tiles (striped layouts)
// evaluate the predicate per element.
template <typename T>
inline void mask_tile(T* s, int64_t nq, int64_t nk, const int64_t* qp, const int64_t* qd, const int64_t* kp,
                      const int64_t* kd, const MaskSpec& m) {
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
      const int64_t i = qp[r];
      for (int u = 0; u < n_runs; ++u) {
        const int64_t c0 = runs[u], c1 = runs[u + 1], k0 = kp[c0] - c0;  // position of column c is k0 + c
        int64_t lo = c0, hi = c1;
        if (m.documents) {  // document ids do not decrease along consecutive positions
          lo = std::lower_bound(kd + c0, kd + c1, qd[r]) - kd;
          hi = std::upper_bound(kd + c0, kd + c1, qd[r]) - kd;
        }
        if (m.causal) hi = std::min(hi, i - k0 + 1);
        if (m.window) {
          lo = std::max(lo, i - m.left - k0);
          hi = std::min(hi, i + m.right - k0 + 1);
        }
        lo = std::clamp<int64_t>(lo, c0, c1);
        hi = std::clamp<int64_t>(hi, lo, c1);
        std::fill(row + c0, row + lo, neg_inf);
        std::fill(row + hi, row + c1, neg_inf);
      }
    }
    return;
  }
  for (int64_t r = 0; r < nq; ++r) {
    T* row = s + r * nk;
    for (int64_t c = 0; c < nk; ++c) row[c] = m.visible(qp[r], kp[c], qd[r], kd[c]) ? row[c] : neg_inf;
  }
}

// P = exp(S - lse_r) per row in place; rows with lse = -inf (no visible key) become 0.
template <typename T>
inline void exp_minus_rows(T* s, int64_t nq, int64_t nk, const T* lse, int64_t lse_stride) {
  for (int64_t r = 0; r < nq; ++r) {
    T* row = s + r * nk;
    const T l = lse[r * lse_stride];
    if (l == -std::numeric_limits<T>::infinity()) {
      for (int64_t c = 0; c < nk; ++c) row[c] = 0;
      continue;
    }
    exp_shifted(row, nk, l);
  }
}

}  // namespace longhaul::cpu

// Elementwise work on one score tile S[nq × nk] (row-major, row stride nk), shared by the forward
// and backward kernels. Written as plain loops that vectorise (compiled with AVX2/FMA).
#pragma once

#include <cstdint>
#include <limits>

#include "attention/cpu/params.h"
#include "attention/cpu/vexp.h"

namespace longhaul::cpu {

// Max and sum of a row with 16 independent lanes: vectorises without -ffast-math, and the fixed
// lane order keeps results deterministic.
template <typename T>
inline T row_max(const T* x, int64_t n, T init) {
  constexpr int kLanes = 16;
  T acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = init;
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = acc[l] > x[c + l] ? acc[l] : x[c + l];
  T m = init;
  for (int l = 0; l < kLanes; ++l) m = m > acc[l] ? m : acc[l];
  for (; c < n; ++c) m = m > x[c] ? m : x[c];
  return m;
}

template <typename T>
inline T row_sum(const T* x, int64_t n) {
  constexpr int kLanes = 16;
  T acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[c + l];
  T s = 0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  for (; c < n; ++c) s += x[c];
  return s;
}

// x = exp(x - shift), in place.
template <typename T>
inline void exp_shifted(T* x, int64_t n, T shift) {
  exp_shifted_array(x, n, shift);
}

// Sets the entries the mask hides to -inf (only called on partial tiles).
template <typename T>
inline void mask_tile(T* s, int64_t nq, int64_t nk, const int64_t* qp, const int64_t* qd, const int64_t* kp,
                      const int64_t* kd, const MaskSpec& m) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < nq; ++r) {
    T* row = s + r * nk;
    const int64_t i = qp[r], di = qd[r];
    for (int64_t c = 0; c < nk; ++c) {
      const int64_t j = kp[c];
      bool vis = kd[c] == di;
      if (m.causal) vis = vis && j <= i;
      if (m.window) vis = vis && i - j <= m.left && j - i <= m.right;
      row[c] = vis ? row[c] : neg_inf;
    }
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

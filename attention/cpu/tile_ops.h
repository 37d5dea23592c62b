// Elementwise work on one score tile S[nq × nk] (row-major, row stride nk), shared by the forward
// and backward kernels. Written as plain loops that vectorise (compiled with AVX2/FMA).
#pragma once

#include <cstdint>
#include <limits>

#include "attention/cpu/params.h"
#include "attention/cpu/vexp.h"

namespace longhaul::cpu {

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
    for (int64_t c = 0; c < nk; ++c) row[c] = exp_of(row[c] - l);
  }
}

}  // namespace longhaul::cpu

// Forward: for each (head, query tile) an online softmax over the non-empty key tiles, two tile
// GEMMs per step (S = scale·Q Kᵀ, O += P V); never a Tq×Tk buffer. Parallel over heads × query
// tiles; each item writes its own output rows, so results do not depend on the thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "attention/cpu/gemm.h"
#include "attention/cpu/params.h"
#include "attention/cpu/tile_ops.h"

namespace longhaul::cpu {

// How far a row's scores may pass its running max before the output row is rescaled: e^8 ≈ 3000
// keeps every P and partial sum far from float overflow.
template <typename T>
constexpr T kRescaleSlack = T(8);

template <typename T>
void forward_kernel(const ForwardParams<T>& p) {
  const int64_t bq = p.block_q, bk = p.block_k, d = p.d;
  const Tiling tiles = make_tiling(p);
  const auto& q_tiles = tiles.q;
  const auto& k_tiles = tiles.k;
  const int64_t nqt = tiles.nq, nkt = tiles.nk, group = tiles.group;
  const T neg_inf = -std::numeric_limits<T>::infinity(), pos_inf = std::numeric_limits<T>::infinity();
  const PartialTiles partial = cut_partial_tiles(p, tiles);

  at::parallel_for(0, p.h * nqt, 1, [&](int64_t begin, int64_t end) {
    SingleThreadedBlas blas_on_this_thread;
    std::vector<T> s(bq * std::max(bk, p.run_k)), o(bq * d), m(bq), l(bq);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t h = item / nqt, qt = item % nqt, hk = h / group;
      const int64_t i0 = qt * bq, nq = std::min(bq, p.tq - i0);
      const T* q = p.q + (i0 * p.h + h) * d;
      std::fill(o.begin(), o.begin() + nq * d, T(0));
      std::fill(m.begin(), m.begin() + nq, neg_inf);
      std::fill(l.begin(), l.begin() + nq, T(0));
      for (int64_t kt = 0, next = 1; kt < nkt; kt = next++) {
        const BlockClass cls = p.mask->classify(q_tiles[qt], k_tiles[kt]);
        if (cls == BlockClass::Empty) continue;
        if (cls == BlockClass::Full)  // extend over the following full tiles, up to run_k keys
          while (next < nkt && (next + 1 - kt) * bk <= p.run_k &&
                 p.mask->classify(q_tiles[qt], k_tiles[next]) == BlockClass::Full)
            ++next;
        const int64_t j0 = kt * bk, nk = std::min(next * bk, p.tk) - j0;
        // One piece of the tile: rows r0 .. r0 + nr against columns c0 .. c0 + nc.
        auto step = [&](int64_t r0, int64_t nr, int64_t c0, int64_t nc, bool masked) {
          const T* k = p.k + ((j0 + c0) * p.hkv + hk) * d;
          const T* v = p.v + ((j0 + c0) * p.hkv + hk) * d;
          gemm_rm<T>(false, true, nr, nc, d, p.scale, q + r0 * p.h * d, p.h * d, k, p.hkv * d, T(0), s.data(), nc);
          if (masked) mask_tile(s.data(), nr, nc, *p.q_keys, i0 + r0, p.k_pos + j0 + c0);
          for (int64_t rr = 0; rr < nr; ++rr) {
            const int64_t r = r0 + rr;
            T* row = s.data() + rr * nc;
            const T mx = row_max(row, nc, m[r]);
            if (mx == neg_inf) {  // nothing visible yet in this row: P = 0
              std::fill(row, row + nc, T(0));
              continue;
            }
            if (!(mx < pos_inf)) {  // a NaN or +inf score: the row is NaN for good, as in SDPA's softmax
              m[r] = l[r] = std::numeric_limits<T>::quiet_NaN();
              std::fill(o.data() + r * d, o.data() + (r + 1) * d, m[r]);
              std::fill(row, row + nc, T(0));
              continue;
            }
            // Lazy rescaling: the running max moves only when a score passes it by more than
            // kRescaleSlack, so most tiles skip rescaling the output row. P = exp(S − m) ≤ e^slack
            // in between; lse = m + log l stays exact.
            if (mx > m[r] + kRescaleSlack<T>) {
              const T alpha = exp_of(m[r] - mx);  // 0 when m was -inf
              T* orow = o.data() + r * d;
              for (int64_t c = 0; c < d; ++c) orow[c] *= alpha;
              l[r] *= alpha;
              m[r] = mx;
            }
            l[r] += exp_shifted_sum(row, nc, m[r]);
          }
          gemm_rm<T>(false, false, nr, d, nc, T(1), s.data(), nc, v, p.hkv * d, T(1), o.data() + r0 * d, d);
        };
        if (cls == BlockClass::Full) {
          step(0, nq, 0, nk, false);
          continue;
        }
        for (const TilePiece* x = partial.begin(qt, kt); x != partial.end(qt, kt); ++x)
          step(x->r0, x->nr, x->c0, x->nc, x->partial);
      }
      for (int64_t r = 0; r < nq; ++r) {
        T* out = p.out + ((i0 + r) * p.h + h) * d;
        const T* orow = o.data() + r * d;
        if (l[r] == T(0)) {  // a row that sees no key
          std::fill(out, out + d, T(0));
          p.lse[h * p.tq + i0 + r] = neg_inf;
          continue;
        }
        const T inv = T(1) / l[r];
        for (int64_t c = 0; c < d; ++c) out[c] = orow[c] * inv;
        p.lse[h * p.tq + i0 + r] = m[r] + std::log(l[r]);
      }
    }
  });
}

template void forward_kernel<float>(const ForwardParams<float>&);
template void forward_kernel<double>(const ForwardParams<double>&);

}  // namespace longhaul::cpu

// ATen side of the CPU backend: dtype conversion (bf16/fp16 compute in float32), positions and
// visible-key intervals per query row, output allocation; then the plain-struct kernels.
#include <ATen/ATen.h>

#include <algorithm>
#include <memory>

#include "attention/cpu/entry.h"
#include "core/dtypes.h"
#include "attention/cpu/params.h"

namespace longhaul::cpu {
namespace {

// Tile sizes (params.h), measured here with `longhaul bench kernel` (2 threads, fraction of the
// sgemm rate): query tiles of 512 rows, key tiles of 128, and runs of full key tiles merged into
// forward steps of 512 keys (causal T=4096 fwd: D=64 0.65 → 0.73, D=128 0.72 → 0.77). A narrow
// band (window) takes 256-row query tiles in the forward, so its edge tiles waste less, with runs
// up to 1024 keys for its interior (window 1024, T=16384: 0.56 → 0.66). The backward keeps 512 × 128
// for every mask: its time hardly moved with tile or run sizes. Partial tiles are worked in slices
// of 64 query rows trimmed to the keys they see (params.h partial_pieces): on a faster Xeon (AMX
// generation, causal fwd ≈ 300 GFLOP/s) document and block-causal masks went from 0.78 to
// 0.85–0.93 of the causal rate (forward); 128-row slices kept less of that gain. With the slices,
// a narrow band's forward is fastest on 256 × 128 tiles, not 256 × 64 (sliding_window_causal,
// T=16384: 257–267 → 274 GFLOP/s; narrower key tiles now only add calls).
struct TilePlan {
  int64_t block_q, block_k, run_k;
};
enum class Pass { Forward, Backward };
TilePlan tile_plan(Pass pass, const Mask& mask) {
  const int64_t band = mask.spec().band_width();  // a windowed mask: its band of diagonals
  const bool narrow_band = band >= 0 && band < 2048;
  if (pass == Pass::Forward && narrow_band) return {256, 128, 1024};
  return {512, 128, 512};
}

// dQ partials: at most this many virtual workers and this many bytes in all.
constexpr int64_t kMaxWorkers = 4;
constexpr int64_t kPartialBudget = int64_t(256) << 20;

at::ScalarType compute_type(const at::Tensor& t) { return accumulate_type(t); }
at::Tensor as(const at::Tensor& t, at::ScalarType type) { return t.to(type).contiguous(); }

// Keeps the converted tensors and the row intervals alive while the kernel reads raw pointers.
struct Prepared {
  at::Tensor q, k, v, q_pos, k_pos;
  std::shared_ptr<RowKeys> q_keys;
};

template <typename T>
Prepared prepare(AttentionParams<T>& p, Pass pass, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const BlockView& view, const Mask& mask, double scale) {
  const TilePlan tiles = tile_plan(pass, mask);
  p.block_q = tiles.block_q;
  p.block_k = tiles.block_k;
  p.run_k = tiles.run_k;
  const auto type = compute_type(q);
  Prepared keep{as(q, type), as(k, type), as(v, type), view.q_pos.to(at::kLong).contiguous(),
                view.k_pos.to(at::kLong).contiguous(), {}};
  keep.q_keys = std::make_shared<RowKeys>(mask.spec().keys_of_rows(keep.q_pos.data_ptr<int64_t>(), q.size(0)));
  p.q = keep.q.data_ptr<T>();
  p.k = keep.k.data_ptr<T>();
  p.v = keep.v.data_ptr<T>();
  p.tq = q.size(0);
  p.tk = k.size(0);
  p.h = q.size(1);
  p.hkv = k.size(1);
  p.d = q.size(2);
  p.scale = static_cast<T>(scale);
  p.q_pos = keep.q_pos.data_ptr<int64_t>();
  p.k_pos = keep.k_pos.data_ptr<int64_t>();
  p.mask = &mask.spec();
  p.q_keys = keep.q_keys.get();
  return keep;
}

template <typename T>
AttentionOutput forward_typed(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                              const Mask& mask, double scale) {
  ForwardParams<T> p;
  Prepared keep = prepare(p, Pass::Forward, q, k, v, view, mask, scale);
  at::Tensor out = at::empty(keep.q.sizes(), keep.q.options());
  at::Tensor lse = at::empty({p.h, p.tq}, keep.q.options());
  p.out = out.data_ptr<T>();
  p.lse = lse.data_ptr<T>();
  if (p.tq > 0) {
    if (p.tk == 0) {
      out.zero_();
      lse.fill_(-std::numeric_limits<double>::infinity());
    } else {
      forward_kernel(p);
    }
  }
  return {out, lse};  // float32 (float64): the caller rounds
}

template <typename T>
AttentionGrads backward_typed(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& row_sums, const at::Tensor& lse, const BlockView& view,
                              const Mask& mask, double scale) {
  BackwardParams<T> p;
  Prepared keep = prepare(p, Pass::Backward, q, k, v, view, mask, scale);
  const auto type = keep.q.scalar_type();
  at::Tensor dout_c = as(dout, type), lse_c = as(lse, type), rows_c = as(row_sums, type);
  // Every element of dq, dk and dv is written by the kernel (untouched rows as zeros).
  at::Tensor dq = at::empty(keep.q.sizes(), keep.q.options());
  at::Tensor dk = at::empty(keep.k.sizes(), keep.k.options());
  at::Tensor dv = at::empty(keep.k.sizes(), keep.k.options());
  if (p.tq == 0 || p.tk == 0) return {dq.zero_(), dk.zero_(), dv.zero_()};
  p.dout = dout_c.data_ptr<T>();
  p.lse = lse_c.data_ptr<T>();
  p.row_sums = rows_c.data_ptr<T>();
  p.dq = dq.data_ptr<T>();
  p.dk = dk.data_ptr<T>();
  p.dv = dv.data_ptr<T>();
  // The split depends on sizes and the mask only, never on threads (bitwise-reproducible results).
  const int64_t row_bytes = p.h * p.d * static_cast<int64_t>(sizeof(T));
  const Tiling tiles = make_tiling(p);
  const BackwardSplit split = split_backward(tiles, *p.mask, p.tq, p.block_q, kMaxWorkers,
                                             kPartialBudget / std::max<int64_t>(row_bytes, 1));
  p.tiles = &tiles;
  p.split = &split;
  at::Tensor partials;
  if (split.workers() > 1) {
    partials = at::empty({split.slab_rows * p.h * p.d}, keep.q.options());
    p.dq_partials = partials.data_ptr<T>();
  }
  backward_kernel(p);
  return {dq, dk, dv};
}

}  // namespace

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale) {
  return q.scalar_type() == at::kDouble ? forward_typed<double>(q, k, v, view, mask, scale)
                                        : forward_typed<float>(q, k, v, view, mask, scale);
}

AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask, double scale) {
  return in.q.scalar_type() == at::kDouble
             ? backward_typed<double>(in.dout, in.q, in.k, in.v, in.row_sums, in.lse, view, mask, scale)
             : backward_typed<float>(in.dout, in.q, in.k, in.v, in.row_sums, in.lse, view, mask, scale);
}

void merge_into(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b) {
  const auto type = out_acc.scalar_type();
  at::Tensor ob = as(out_b, type), lb = as(lse_b, type);
  at::Tensor la = lse_acc.scalar_type() == type ? lse_acc : lse_acc.to(type);
  auto run = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    MergeParams<T> p;
    p.out_acc = out_acc.data_ptr<T>();
    p.lse_acc = la.data_ptr<T>();
    p.out_b = ob.data_ptr<T>();
    p.lse_b = lb.data_ptr<T>();
    p.t = out_acc.size(0);
    p.h = out_acc.size(1);
    p.d = out_acc.size(2);
    merge_kernel(p);
  };
  if (type == at::kDouble) run(static_cast<double*>(nullptr));
  else run(static_cast<float*>(nullptr));
  if (!la.is_same(lse_acc)) lse_acc.copy_(la);
}

}  // namespace longhaul::cpu

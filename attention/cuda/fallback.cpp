#include "attention/cuda/fallback.h"
#include "core/dtypes.h"
#include "core/host_to_device.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

namespace longhaul::cuda::fallback {
namespace {

// Bytes of one [H, chunk, Tk] buffer; forward keeps ~2 alive, backward ~4.
constexpr int64_t kScoreBudget = int64_t(256) << 20;

at::ScalarType acc_type(const at::Tensor& q) { return accumulate_type(q); }

int64_t chunk_rows(int64_t tq, int64_t h, int64_t tk, at::ScalarType acc) {
  const int64_t per_row = std::max<int64_t>(1, h * tk * static_cast<int64_t>(c10::elementSize(acc)));
  return std::max<int64_t>(1, std::min<int64_t>(tq, kScoreBudget / per_row));
}

// Key positions and each query row's visible-key intervals on the device, for building chunk
// masks there (a few [rows, Tk] comparisons per chunk, never a T × T buffer). Where the key
// positions ascend (contiguous, zigzag, striped shards) a chunk only touches the key rows between
// its rows' first and last visible key: a window or a document costs its own area, not T × T.
struct DeviceView {
  at::Tensor k_pos, q_keys;  // q_keys [Tq, M, 2]: Mask::key_intervals
  at::Tensor k_pos_cpu, q_keys_cpu;
  bool keys_ascend = false;
  DeviceView(const BlockView& view, const Mask& mask, const at::Device& dev) {
    k_pos_cpu = view.k_pos.to(at::kCPU).to(at::kLong).contiguous();
    q_keys_cpu = mask.key_intervals(view.q_pos.to(at::kCPU)).contiguous();
    k_pos = host_to_device(k_pos_cpu, dev);
    q_keys = host_to_device(q_keys_cpu, dev);
    keys_ascend = k_pos_cpu.numel() < 2 ||
                  (k_pos_cpu.narrow(0, 1, k_pos_cpu.numel() - 1) > k_pos_cpu.narrow(0, 0, k_pos_cpu.numel() - 1))
                      .all()
                      .item<bool>();
  }
  // Key rows [k0, k1) that query rows [r0, r0 + rows) can see (k1 <= k0: none).
  std::pair<int64_t, int64_t> key_span(int64_t r0, int64_t rows) const {
    const int64_t tk = k_pos_cpu.numel();
    if (!keys_ascend) return {0, tk};
    const at::Tensor iv = q_keys_cpu.narrow(0, r0, rows);
    const at::Tensor lo = iv.select(2, 0), hi = iv.select(2, 1), used = lo <= hi;
    if (!used.any().item<bool>()) return {0, 0};
    const int64_t first = lo.masked_select(used).min().item<int64_t>(), last = hi.masked_select(used).max().item<int64_t>();
    const int64_t* kp = k_pos_cpu.data_ptr<int64_t>();
    return {std::lower_bound(kp, kp + tk, first) - kp, std::upper_bound(kp, kp + tk, last) - kp};
  }
  // Visibility [rows, k1 - k0] of query rows [r0, r0 + rows) against key rows [k0, k1).
  at::Tensor visible(int64_t r0, int64_t rows, int64_t k0, int64_t k1) const {
    const at::Tensor kp = k_pos.narrow(0, k0, k1 - k0).unsqueeze(0), iv = q_keys.narrow(0, r0, rows);
    at::Tensor vis = at::zeros({rows, kp.size(1)}, k_pos.options().dtype(at::kBool));
    for (int64_t m = 0; m < iv.size(1); ++m)
      vis = vis | (kp.ge(iv.select(1, m).select(1, 0).unsqueeze(1)) & kp.le(iv.select(1, m).select(1, 1).unsqueeze(1)));
    return vis;
  }
};

// [rows, H, D] -> [H_kv, g·rows, D] (query head h = kv·g + j), in the accumulation dtype.
at::Tensor group_queries(const at::Tensor& x, int64_t hkv, at::ScalarType acc) {
  at::Tensor y = x.to(acc).permute({1, 0, 2}).contiguous();
  return y.view({hkv, -1, y.size(2)});
}

// P = exp(S − lse) on visible entries with a finite lse, else 0: [H, rows, Tk].
at::Tensor probabilities(const at::Tensor& scores, const at::Tensor& vis, const at::Tensor& lse) {
  at::Tensor l = lse.unsqueeze(-1);
  at::Tensor keep = vis.unsqueeze(0) & at::isfinite(l);
  return at::where(keep, at::exp(scores - at::where(keep, l, at::zeros_like(l))), at::zeros({}, scores.options()));
}

}  // namespace

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale) {
  const int64_t tq = q.size(0), h = q.size(1), d = q.size(2), tk = k.size(0), hkv = k.size(1);
  const auto acc = acc_type(q);
  at::Tensor out = at::zeros({tq, h, d}, q.options().dtype(acc));
  at::Tensor lse = at::full({h, tq}, -std::numeric_limits<double>::infinity(), q.options().dtype(acc));
  if (tq == 0 || tk == 0) return {out, lse};
  const DeviceView dv(view, mask, q.device());
  at::Tensor K = k.to(acc).permute({1, 2, 0});               // [H_kv, D, Tk]
  at::Tensor V = v.to(acc).permute({1, 0, 2}).contiguous();  // [H_kv, Tk, D]
  const int64_t chunk = chunk_rows(tq, h, tk, acc);
  for (int64_t r0 = 0; r0 < tq; r0 += chunk) {
    const int64_t rows = std::min(chunk, tq - r0);
    const auto [k0, k1] = dv.key_span(r0, rows);
    if (k1 <= k0) continue;  // no key visible: out 0, lse −∞ as initialised
    const int64_t n = k1 - k0;
    at::Tensor Q = group_queries(q.narrow(0, r0, rows), hkv, acc);
    at::Tensor S = (at::bmm(Q, K.narrow(2, k0, n)) * scale).view({h, rows, n});
    at::Tensor vis = dv.visible(r0, rows, k0, k1);
    S.masked_fill_(~vis.unsqueeze(0), -std::numeric_limits<double>::infinity());
    at::Tensor L = at::logsumexp(S, -1);  // −∞ for rows without keys
    at::Tensor P = probabilities(S, vis, L);
    at::Tensor O = at::bmm(P.view({hkv, -1, n}), V.narrow(1, k0, n)).view({h, rows, d});
    out.narrow(0, r0, rows).copy_(O.permute({1, 0, 2}));
    lse.narrow(1, r0, rows).copy_(L);
  }
  return {out, lse};
}

AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& row_sums, const at::Tensor& lse, const BlockView& view, const Mask& mask,
                        double scale) {
  const int64_t tq = q.size(0), h = q.size(1), d = q.size(2), tk = k.size(0), hkv = k.size(1);
  const auto acc = acc_type(q);
  at::Tensor dq = at::zeros({tq, h, d}, q.options().dtype(acc));
  at::Tensor dK = at::zeros({hkv, tk, d}, q.options().dtype(acc));
  at::Tensor dV = at::zeros({hkv, tk, d}, q.options().dtype(acc));
  if (tq > 0 && tk > 0) {
    const DeviceView dvw(view, mask, q.device());
    at::Tensor K = k.to(acc).permute({1, 0, 2}).contiguous();  // [H_kv, Tk, D]
    at::Tensor V = v.to(acc).permute({1, 0, 2}).contiguous();
    at::Tensor L = lse.to(q.device()).to(acc), Dsum = row_sums.to(q.device()).to(acc);
    // Four [H, rows, Tk] buffers are alive at once (S, P, dP, dS).
    const int64_t chunk = std::max<int64_t>(1, chunk_rows(tq, h, tk, acc) / 2);
    for (int64_t r0 = 0; r0 < tq; r0 += chunk) {
      const int64_t rows = std::min(chunk, tq - r0);
      const auto [k0, k1] = dvw.key_span(r0, rows);
      if (k1 <= k0) continue;  // no key visible: no gradient
      const int64_t n = k1 - k0;
      const at::Tensor Kc = K.narrow(1, k0, n), Vc = V.narrow(1, k0, n);
      at::Tensor Q = group_queries(q.narrow(0, r0, rows), hkv, acc);           // [H_kv, g·rows, D]
      at::Tensor dO = group_queries(dout.narrow(0, r0, rows), hkv, acc);
      at::Tensor S = (at::bmm(Q, Kc.transpose(1, 2)) * scale).view({h, rows, n});
      at::Tensor P = probabilities(S, dvw.visible(r0, rows, k0, k1), L.narrow(1, r0, rows));
      at::Tensor Pg = P.view({hkv, -1, n});
      dV.narrow(1, k0, n).add_(at::bmm(Pg.transpose(1, 2), dO));
      at::Tensor dP = at::bmm(dO, Vc.transpose(1, 2)).view({h, rows, n});
      at::Tensor dS = (P * (dP - Dsum.narrow(1, r0, rows).unsqueeze(-1))).view({hkv, -1, n});
      at::Tensor dQ = (at::bmm(dS, Kc) * scale).view({h, rows, d});
      dq.narrow(0, r0, rows).copy_(dQ.permute({1, 0, 2}));
      dK.narrow(1, k0, n).add_(at::bmm(dS.transpose(1, 2), Q), scale);
    }
  }
  return {dq, dK.permute({1, 0, 2}).contiguous(), dV.permute({1, 0, 2}).contiguous()};
}

}  // namespace longhaul::cuda::fallback

#include "attention/chunked_math.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "core/dtypes.h"
#include "core/host_to_device.h"
#include "core/vector_math_warmup.h"

namespace longhaul::chunked_math {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// A block's visible-key intervals (Mask::key_intervals, [Tq, M, 2] positions) and key positions,
// on the host for planning and on the compute device for the chunk masks.
struct Block {
  at::Tensor k_pos_cpu, q_keys_cpu, k_pos, q_keys;
  Block(const BlockView& view, const Mask& mask, const at::Device& dev) {
    k_pos_cpu = view.k_pos.to(at::kCPU).to(at::kLong).contiguous();
    q_keys_cpu = mask.key_intervals(view.q_pos.to(at::kCPU).to(at::kLong)).contiguous();
    k_pos = host_to_device(k_pos_cpu, dev);
    q_keys = host_to_device(q_keys_cpu, dev);
  }
  // [rows, k1 - k0] bool, true where a query row of the chunk does not see a key row of it.
  at::Tensor hidden(const Chunk& c) const {
    const at::Tensor kp = k_pos.narrow(0, c.k0, c.k1 - c.k0).unsqueeze(0), iv = q_keys.narrow(0, c.r0, c.rows);
    at::Tensor hid;
    for (int64_t m = 0; m < iv.size(1); ++m) {  // unused intervals (1, 0) hide every key
      const at::Tensor outside = kp.lt(iv.select(1, m).select(1, 0).unsqueeze(1))
                                     .logical_or_(kp.gt(iv.select(1, m).select(1, 1).unsqueeze(1)));
      hid = hid.defined() ? hid.logical_and_(outside) : outside;
    }
    return hid.defined() ? hid : at::ones({c.rows, c.k1 - c.k0}, k_pos.options().dtype(at::kBool));
  }
};

// Each query row's visible keys: how many, and the key rows [first, last) that hold them (the
// whole block where key positions do not ascend).
struct RowKeys {
  std::vector<int64_t> first, last, seen;
};

RowKeys row_keys(const at::Tensor& k_pos, const at::Tensor& q_keys) {
  const int64_t tq = q_keys.size(0), m = q_keys.size(1), tk = k_pos.numel();
  const int64_t* kp = k_pos.data_ptr<int64_t>();
  const bool ascend = std::adjacent_find(kp, kp + tk, [](int64_t a, int64_t b) { return a >= b; }) == kp + tk;
  std::vector<int64_t> sorted;
  if (!ascend) {
    sorted.assign(kp, kp + tk);
    std::sort(sorted.begin(), sorted.end());
  }
  const int64_t* sp = ascend ? kp : sorted.data();
  const int64_t* iv = q_keys.data_ptr<int64_t>();
  RowKeys r{std::vector<int64_t>(tq, 0), std::vector<int64_t>(tq, 0), std::vector<int64_t>(tq, 0)};
  for (int64_t i = 0; i < tq; ++i) {
    int64_t first = tk, last = 0;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t lo = iv[(i * m + j) * 2], hi = iv[(i * m + j) * 2 + 1];
      if (lo > hi) continue;
      const int64_t a = std::lower_bound(sp, sp + tk, lo) - sp, b = std::upper_bound(sp, sp + tk, hi) - sp;
      if (a >= b) continue;
      r.seen[i] += b - a;
      first = std::min(first, a);
      last = std::max(last, b);
    }
    if (r.seen[i] == 0) continue;
    r.first[i] = ascend ? first : 0;
    r.last[i] = ascend ? last : tk;
  }
  return r;
}

std::vector<Chunk> cut(const Block& b, int64_t heads, at::ScalarType acc, const ChunkLimits& lim) {
  const RowKeys rk = row_keys(b.k_pos_cpu, b.q_keys_cpu);
  const int64_t tq = static_cast<int64_t>(rk.seen.size()), elem = static_cast<int64_t>(c10::elementSize(acc));
  std::vector<Chunk> chunks;
  for (int64_t r = 0; r < tq;) {
    if (rk.seen[r] == 0) {
      ++r;
      continue;
    }
    int64_t k0 = rk.first[r], k1 = rk.last[r], seen = rk.seen[r], rows = 1;
    for (int64_t j = r + 1; j < tq; ++j, ++rows) {
      const bool sees = rk.seen[j] > 0;
      const int64_t n0 = sees ? std::min(k0, rk.first[j]) : k0, n1 = sees ? std::max(k1, rk.last[j]) : k1;
      const double cells = double(rows + 1) * double(n1 - n0) * double(heads);
      if (cells * double(elem) > double(lim.score_budget)) break;
      if (cells > double(lim.small_buffer) &&
          double(rows + 1) * double(n1 - n0) > lim.max_waste * double(seen + rk.seen[j]))
        break;
      k0 = n0;
      k1 = n1;
      seen += rk.seen[j];
    }
    chunks.push_back({r, rows, k0, k1, seen == rows * (k1 - k0)});
    r += rows;
  }
  return chunks;
}

// [rows, H, D] -> [H_kv, g·rows, D] times `factor` (query head h = kv·g + j), in the accumulation
// dtype.
at::Tensor group_queries(const at::Tensor& x, int64_t hkv, at::ScalarType acc, double factor) {
  at::Tensor y = x.to(acc);
  y = (factor == 1.0 ? y : y * factor).permute({1, 0, 2}).contiguous();
  return y.view({hkv, -1, y.size(2)});
}

// Scores of a chunk, [H, rows, n], with the hidden pairs at −∞.
at::Tensor masked_scores(const Block& b, const Chunk& c, const at::Tensor& Qs, const at::Tensor& Kt, int64_t h) {
  at::Tensor S = at::bmm(Qs, Kt).view({h, c.rows, c.k1 - c.k0});
  if (!c.all_visible) S.masked_fill_(b.hidden(c).unsqueeze(0), -kInf);
  return S;
}

}  // namespace

std::vector<Chunk> plan_chunks(const BlockView& view, const Mask& mask, int64_t heads, at::ScalarType acc,
                               const ChunkLimits& limits) {
  return cut(Block(view, mask, at::kCPU), heads, acc, limits);
}

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale, const ChunkLimits& limits) {
  warm_up_vector_math();
  const int64_t tq = q.size(0), h = q.size(1), d = q.size(2), tk = k.size(0), hkv = k.size(1);
  const auto acc = accumulate_type(q);
  at::Tensor out = at::zeros({tq, h, d}, q.options().dtype(acc));
  at::Tensor lse = at::full({h, tq}, -kInf, q.options().dtype(acc));
  if (tq == 0 || tk == 0) return {out, lse};
  const Block b(view, mask, q.device());
  const at::Tensor K = k.to(acc).permute({1, 2, 0});               // [H_kv, D, Tk]
  const at::Tensor V = v.to(acc).permute({1, 0, 2}).contiguous();  // [H_kv, Tk, D]
  for (const Chunk& c : cut(b, h, acc, limits)) {
    const int64_t n = c.k1 - c.k0;
    const at::Tensor Qs = group_queries(q.narrow(0, c.r0, c.rows), hkv, acc, scale);  // [H_kv, g·rows, D]
    at::Tensor S = masked_scores(b, c, Qs, K.narrow(2, c.k0, n), h);
    // Softmax in place: E = exp(S − row max), O = E·V / Σ E, lse = log Σ E + row max. A row whose
    // pairs are all hidden keeps out 0 and lse −∞.
    at::Tensor mx = at::amax(S, -1, /*keepdim=*/true);
    mx.masked_fill_(mx.isinf(), 0);
    const at::Tensor sum = S.sub_(mx).exp_().sum(-1);  // [H, rows]
    at::Tensor O = at::bmm(S.view({hkv, -1, n}), V.narrow(1, c.k0, n)).view({h, c.rows, d});
    O.mul_(at::where(sum > 0, sum.reciprocal(), at::zeros({}, sum.options())).unsqueeze(-1));
    out.narrow(0, c.r0, c.rows).copy_(O.permute({1, 0, 2}));
    lse.narrow(1, c.r0, c.rows).copy_(sum.log().add_(mx.squeeze(-1)));
  }
  return {out, lse};
}

AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& row_sums, const at::Tensor& lse, const BlockView& view, const Mask& mask,
                        double scale, const ChunkLimits& limits) {
  warm_up_vector_math();
  const int64_t tq = q.size(0), h = q.size(1), d = q.size(2), tk = k.size(0), hkv = k.size(1);
  const auto acc = accumulate_type(q);
  at::Tensor dq = at::zeros({tq, h, d}, q.options().dtype(acc));
  at::Tensor dK = at::zeros({hkv, tk, d}, q.options().dtype(acc));
  at::Tensor dV = at::zeros({hkv, tk, d}, q.options().dtype(acc));
  if (tq > 0 && tk > 0) {
    const Block b(view, mask, q.device());
    const at::Tensor K = k.to(acc).permute({1, 0, 2}).contiguous();  // [H_kv, Tk, D]
    const at::Tensor V = v.to(acc).permute({1, 0, 2}).contiguous();
    // A row whose lse is not finite gets no probability: −∞ − (+∞) and s − (+∞) exponentiate to 0.
    at::Tensor L = lse.to(q.device()).to(acc);
    L = at::where(at::isfinite(L), L, at::full({}, kInf, L.options()));
    const at::Tensor Dsum = row_sums.to(q.device()).to(acc);
    for (const Chunk& c : cut(b, h, acc, limits)) {
      const int64_t n = c.k1 - c.k0;
      const at::Tensor Kc = K.narrow(1, c.k0, n), Vc = V.narrow(1, c.k0, n);
      const at::Tensor Qs = group_queries(q.narrow(0, c.r0, c.rows), hkv, acc, scale);  // [H_kv, g·rows, D]
      const at::Tensor dO = group_queries(dout.narrow(0, c.r0, c.rows), hkv, acc, 1.0);
      at::Tensor P = masked_scores(b, c, Qs, Kc.transpose(1, 2), h);
      P.sub_(L.narrow(1, c.r0, c.rows).unsqueeze(-1)).exp_();  // P = exp(S − lse)
      const at::Tensor Pg = P.view({hkv, -1, n});
      dV.narrow(1, c.k0, n).add_(at::bmm(Pg.transpose(1, 2), dO));
      // dS = P ∘ (dP − row sums), in dP's buffer.
      at::Tensor dS = at::bmm(dO, Vc.transpose(1, 2)).view({h, c.rows, n});
      dS.sub_(Dsum.narrow(1, c.r0, c.rows).unsqueeze(-1)).mul_(P);
      const at::Tensor dSg = dS.view({hkv, -1, n});
      dq.narrow(0, c.r0, c.rows).copy_(at::bmm(dSg, Kc).mul_(scale).view({h, c.rows, d}).permute({1, 0, 2}));
      dK.narrow(1, c.k0, n).add_(at::bmm(dSg.transpose(1, 2), Qs));  // Qs carries the scale
    }
  }
  return {dq, dK.permute({1, 0, 2}).contiguous(), dV.permute({1, 0, 2}).contiguous()};
}

}  // namespace longhaul::chunked_math

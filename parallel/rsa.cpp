// Ring Self-Attention (Li et al. 2021), kept faithful as the baseline: K circulates (blocking)
// to build full score rows [H, Tl, T]; an ordinary softmax; V circulates to accumulate P·V.
// Backward circulates K and V again, builds dK/dV for the whole sequence and all-reduces them.
// Memory is quadratic (Tl × T scores per head); communication is not overlapped. Full and
// causal masks only, as in the paper.
//
// Its compute is plain products and elementwise passes, not the attention kernel: each is metered
// (charged to the rank's virtual clock, a no-op outside the simulator), and rsa_dense_cost counts
// the same operations for the planner.
#include <ATen/ATen.h>

#include "core/errors.h"
#include "core/virtual_clock.h"
#include "parallel/rsa_cost.h"
#include "parallel/step_group.h"
#include "parallel/strategy.h"

namespace longhaul {
namespace {

double bytes_of(const at::Tensor& t) { return double(Tracked::bytes_of(t)); }

// A metered batched product a·b.
at::Tensor product(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor c = at::matmul(a, b);
  virtual_clock::charge_dense(2.0 * double(c.numel()) * double(a.size(-1)), bytes_of(a) + bytes_of(b) + bytes_of(c));
  return c;
}

// Meters `passes` reads or writes of a tensor the size of x (an elementwise operation on it).
const at::Tensor& passes(const at::Tensor& x, int passes) {
  virtual_clock::charge_dense(0, passes * bytes_of(x));
  return x;
}

// Every rank's block of x, gathered by passing blocks around the ring one step at a time
// (blocking), in origin order.
std::vector<at::Tensor> circulate(const at::Tensor& x, const CpCall& c, int64_t& bytes) {
  const int p = c.comm.size(), r = c.comm.rank();
  std::vector<at::Tensor> blocks(p);
  blocks[r] = x;
  at::Tensor cur = x;
  for (int s = 1; s < p; ++s) {
    const int origin = (r - s + p) % p;
    StepGroup step(c.comm, c.stats, bytes);
    step.send(cur, (r + 1) % p, Tag::RsaBlock);
    Tracked next = step.recv({c.plan.local_rows(origin), x.size(1), x.size(2)}, x.options(), (r - 1 + p) % p,
                             Tag::RsaBlock);
    step.post();
    step.wait();
    blocks[origin] = next.get();
    cur = next.get();
  }
  return blocks;
}

// [T, Hkv, D] blocks in origin order -> [H, T, D] in the accumulate dtype (KV heads repeated).
at::Tensor heads_first(const std::vector<at::Tensor>& blocks, int64_t h, at::ScalarType type) {
  at::Tensor all = at::cat(blocks, 0).to(type).permute({1, 0, 2});
  if (all.size(0) == h) return all;
  const int64_t hkv = all.size(0), t = all.size(1), d = all.size(2);  // each KV head h / hkv times
  return all.unsqueeze(1).expand({hkv, h / hkv, t, d}).reshape({h, t, d});
}

// Scores S = scale·Q Kᵀ [H, Tl, T] with the mask applied (−inf).
at::Tensor scores(const at::Tensor& q, const at::Tensor& k_all, const CpCall& c, at::ScalarType type) {
  at::Tensor Q = q.to(type).permute({1, 0, 2});
  at::Tensor S = passes(product(Q, k_all.transpose(1, 2)) * c.scale, 2);
  if (c.mask.is_causal()) {
    passes(S, 2);
    if (S.is_meta()) return S;  // shape-only (the simulator): no values to mask
    at::Tensor qp = c.plan.positions(c.comm.rank()).unsqueeze(1), kp = c.plan.positions_in_rank_order().unsqueeze(0);
    S.masked_fill_(kp.gt(qp).unsqueeze(0), -std::numeric_limits<double>::infinity());
  }
  return S;
}

// P = exp(S − lse), metered as two passes (subtract, exp). A row that sees nothing has lse = −∞
// and scores −∞: subtracting 0 instead gives exp(−∞) = 0. A NaN stays NaN, as in SDPA.
at::Tensor probabilities(const at::Tensor& s, const at::Tensor& lse, at::ScalarType type) {
  at::Tensor l = lse.to(type).unsqueeze(-1);
  l = l.masked_fill(l.eq(-std::numeric_limits<double>::infinity()), 0.0);
  return passes(at::exp(s - l), 4);
}

class RingSelfAttention : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    check_mask(c.mask);
    const auto type = accumulate_type(q);
    const int64_t h = q.size(1);
    Tracked k_all(c.stats, heads_first(circulate(k, c, c.stats.bytes_sent_fwd), h, type));
    Tracked s(c.stats, scores(q, *k_all, c, type));
    at::Tensor lse = at::logsumexp(passes(*s, 3), -1);  // [H, Tl]; max, then exp and sum
    Tracked prob(c.stats, probabilities(*s, lse, type));
    Tracked v_all(c.stats, heads_first(circulate(v, c, c.stats.bytes_sent_fwd), h, type));
    at::Tensor out = product(*prob, *v_all).permute({1, 0, 2}).contiguous();
    return {out, lse.contiguous()};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    check_mask(c.mask);
    const auto type = accumulate_type(q);
    const int64_t h = q.size(1), hkv = k.size(1);
    Tracked k_all(c.stats, heads_first(circulate(k, c, c.stats.bytes_sent_bwd), h, type));
    Tracked s(c.stats, scores(q, *k_all, c, type));
    Tracked prob(c.stats, probabilities(*s, lse, type));
    Tracked v_all(c.stats, heads_first(circulate(v, c, c.stats.bytes_sent_bwd), h, type));
    at::Tensor dO = dout.to(type).permute({1, 0, 2});
    at::Tensor D = attention_row_sums(dout, out).to(type).unsqueeze(-1);
    Tracked ds(c.stats, passes(*prob * (product(dO, v_all->transpose(1, 2)) - D), 5));  // subtract, multiply
    at::Tensor dq = (product(*ds, *k_all) * c.scale).permute({1, 0, 2}).contiguous();
    // Full-length dK/dV from this rank's queries, summed over all ranks, then sliced.
    auto group_sum = [&](const at::Tensor& g) {  // [H, T, D] -> [T, Hkv, D]
      return g.view({hkv, h / hkv, g.size(1), g.size(2)}).sum(1).permute({1, 0, 2}).contiguous();
    };
    Tracked dk_all(c.stats, group_sum(product(ds->transpose(1, 2), q.to(type).permute({1, 0, 2})) * c.scale));
    Tracked dv_all(c.stats, group_sum(product(prob->transpose(1, 2), dO)));
    auto w1 = c.comm.all_reduce(*dk_all), w2 = c.comm.all_reduce(*dv_all);
    wait_all({w1, w2});
    c.stats.bytes_sent_bwd += Tracked::bytes_of(*dk_all) + Tracked::bytes_of(*dv_all);
    int64_t offset = 0;
    for (int o = 0; o < c.comm.rank(); ++o) offset += c.plan.local_rows(o);
    const int64_t rows = k.size(0);
    return {dq, dk_all->narrow(0, offset, rows).clone(), dv_all->narrow(0, offset, rows).clone()};
  }

 private:
  static void check_mask(const Mask& m) {
    if (m.has_documents() || m.has_window() || m.is_general())
      throw Unsupported("strategy rsa (Ring Self-Attention) supports the full and causal masks of its paper, got " +
                        m.describe() + "; use ring, tokenring, allgather or ulysses for documents, windows and the other mask families");
  }
};

}  // namespace

DenseCost rsa_dense_cost(int64_t h, int64_t tl, int64_t t, int64_t d, bool causal, int64_t acc_bytes) {
  const double e = double(acc_bytes), score = double(h) * double(tl) * double(t) * e;
  const double q_rows = double(h) * double(tl) * double(d) * e, kv_rows = double(h) * double(t) * double(d) * e;
  const double gemm = 2.0 * double(h) * double(tl) * double(t) * double(d);
  DenseCost c;
  // Products, [tl × t] scores each: forward Q·Kᵀ, P·V; backward Q·Kᵀ, dO·Vᵀ, dS·K, dSᵀ·Q, Pᵀ·dO.
  c.flops = 7 * gemm;
  c.bytes = 7 * (score + q_rows + kv_rows);  // each reads or writes one of each size
  // Elementwise passes over the scores, as rsa.cpp meters them: forward scale 2 (+ mask 2),
  // logsumexp 3, probabilities 4; backward scale 2 (+ mask 2), probabilities 4, dS 5.
  c.bytes += score * ((causal ? 4 : 2) * 2 + 3 + 4 + 4 + 5);
  return c;
}

std::unique_ptr<CpStrategy> make_ring_self_attention() { return std::make_unique<RingSelfAttention>(); }

}  // namespace longhaul

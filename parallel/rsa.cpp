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

#include <numbers>

#include "core/errors.h"
#include "core/virtual_clock.h"
#include "parallel/rsa_cost.h"
#include "parallel/step_group.h"
#include "parallel/strategy.h"

namespace longhaul {
namespace {

double bytes_of(const at::Tensor& t) { return double(Tracked::bytes_of(t)); }

// A metered batched product a·b, into a fresh tensor.
at::Tensor product(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor c = at::matmul(a, b);
  virtual_clock::charge_dense(2.0 * double(c.numel()) * double(a.size(-1)), bytes_of(a) + bytes_of(b) + bytes_of(c),
                              bytes_of(c));
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

// Scores in base-2 units, S = scale·log2(e)·Q Kᵀ [H, Tl, T], with the mask applied (−∞), so that
// probabilities are exp2(S − m): ATen's CPU exp is several times slower on −∞ and tens of times on
// arguments that underflow, exp2 is not. The product's output is the only score-sized allocation;
// every later pass over the scores works in place (a fresh buffer costs its first touch on top of
// the traffic, and the memory).
constexpr double kLog2e = std::numbers::log2e, kLn2 = std::numbers::ln2;
at::Tensor scores(const at::Tensor& q, const at::Tensor& k_all, const CpCall& c, at::ScalarType type) {
  at::Tensor Q = q.to(type).permute({1, 0, 2});
  at::Tensor S = product(Q, k_all.transpose(1, 2));
  passes(S.mul_(c.scale * kLog2e), 2);
  if (c.mask.is_causal()) {
    passes(S, 2);
    if (S.is_meta()) return S;  // shape-only (the simulator): no values to mask
    at::Tensor qp = c.plan.positions(c.comm.rank()).unsqueeze(1), kp = c.plan.positions_in_rank_order().unsqueeze(0);
    // The plan's positions are host tensors: the mask goes to the scores' device.
    S.masked_fill_(host_to_device(kp.gt(qp), S.device()).unsqueeze(0), -std::numeric_limits<double>::infinity());
  }
  return S;
}

// −∞ (a row that sees nothing) -> 0, so that S − x stays −∞ there and exp gives 0, not NaN.
at::Tensor finite_or_zero(const at::Tensor& x) {
  return x.masked_fill(x.eq(-std::numeric_limits<double>::infinity()), 0.0);
}

// Forward softmax in place: S becomes P = exp2(S − m) / Σ (m the row maximum); returns the natural
// log-sum-exp [H, Tl] = m·ln 2 + ln Σ (−∞ for a row that sees nothing, whose P row is 0). Metered
// as max 1, subtract 2, exp 2, sum 1, divide 2 passes. A NaN stays NaN, as in SDPA.
at::Tensor softmax_in_place(at::Tensor& s) {
  if (s.size(-1) == 0)  // no key at all (T = 0): amax has nothing to reduce
    return at::full({s.size(0), s.size(1)}, -std::numeric_limits<double>::infinity(), s.options());
  at::Tensor m = finite_or_zero(at::amax(passes(s, 1), -1, true));
  passes(s.sub_(m).exp2_(), 4);
  at::Tensor sum = passes(s, 1).sum(-1, true);
  at::Tensor lse = (sum.log() + m * kLn2).squeeze(-1);
  passes(s.div_(sum.masked_fill(sum.eq(0), 1.0)), 2);
  return lse;
}

// Backward: S becomes P = exp2(S − lse·log2 e) in place, metered as two passes (subtract, exp).
at::Tensor& probabilities_in_place(at::Tensor& s, const at::Tensor& lse, at::ScalarType type) {
  passes(s.sub_(finite_or_zero(lse.to(type).unsqueeze(-1)) * kLog2e).exp2_(), 4);
  return s;
}

class RingSelfAttention : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    check_mask(c.mask);
    const auto type = accumulate_type(q);
    const int64_t h = q.size(1);
    Tracked k_all(c.stats, heads_first(circulate(k, c, c.stats.bytes_sent_fwd), h, type));
    at::Tensor s = scores(q, *k_all, c, type);
    Tracked prob(c.stats, s);
    const at::Tensor lse = softmax_in_place(s);
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
    at::Tensor s = scores(q, *k_all, c, type);
    Tracked prob(c.stats, probabilities_in_place(s, lse, type));
    Tracked v_all(c.stats, heads_first(circulate(v, c, c.stats.bytes_sent_bwd), h, type));
    at::Tensor dO = dout.to(type).permute({1, 0, 2});
    at::Tensor D = attention_row_sums(dout, out).to(type).unsqueeze(-1);
    // dS = P ∘ (dO·Vᵀ − D), in place in the product's output: subtract 2, multiply 3 passes.
    at::Tensor dp = product(dO, v_all->transpose(1, 2));
    Tracked ds(c.stats, passes(dp.sub_(D).mul_(*prob), 5));
    at::Tensor dq = product(*ds, *k_all).mul_(c.scale).permute({1, 0, 2}).contiguous();
    // Full-length dK/dV from this rank's queries, summed over all ranks, then sliced.
    auto group_sum = [&](const at::Tensor& g) {  // [H, T, D] -> [T, Hkv, D]
      return g.view({hkv, h / hkv, g.size(1), g.size(2)}).sum(1).permute({1, 0, 2}).contiguous();
    };
    // dK = dSᵀ·Q and dV = Pᵀ·dO, computed as (Qᵀ·dS)ᵀ and (dOᵀ·P)ᵀ: the score-sized operand keeps
    // its layout (a transposed one would be copied first).
    at::Tensor Qt = q.to(type).permute({1, 2, 0});  // [H, D, Tl]
    Tracked dk_all(c.stats, group_sum(product(Qt, *ds).mul_(c.scale).transpose(1, 2)));
    Tracked dv_all(c.stats, group_sum(product(dO.transpose(1, 2), *prob).transpose(1, 2)));
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
  // Fresh outputs: score-sized Q·Kᵀ (forward and backward) and dO·Vᵀ; O and dQ (tl rows); dK, dV.
  c.fresh_bytes = 3 * score + 2 * q_rows + 2 * kv_rows;
  // Elementwise passes over the scores, as rsa.cpp meters them: forward scale 2 (+ mask 2),
  // softmax 8 (max 1, subtract and exp 4, sum 1, divide 2); backward scale 2 (+ mask 2),
  // probabilities 4, dS 5.
  c.bytes += score * ((causal ? 4 : 2) * 2 + 8 + 4 + 5);
  return c;
}

std::unique_ptr<CpStrategy> make_ring_self_attention() { return std::make_unique<RingSelfAttention>(); }

}  // namespace longhaul

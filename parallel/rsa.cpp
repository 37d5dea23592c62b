// Ring Self-Attention (Li et al. 2021), kept faithful as the baseline: K circulates (blocking)
// to build full score rows [H, Tl, T]; an ordinary softmax; V circulates to accumulate P·V.
// Backward circulates K and V again, builds dK/dV for the whole sequence and all-reduces them.
// Memory is quadratic (Tl × T scores per head); communication is not overlapped. Full and
// causal masks only, as in the paper.
#include <ATen/ATen.h>

#include "parallel/step_group.h"
#include "parallel/strategy.h"
#include "core/errors.h"

namespace longhaul {
namespace {

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
  return all.size(0) == h ? all : all.repeat_interleave(h / all.size(0), 0);
}

at::Tensor all_positions(const ShardPlan& plan) {
  std::vector<at::Tensor> pos;
  for (int o = 0; o < plan.P(); ++o) pos.push_back(plan.positions(o));
  return at::cat(pos);
}

// Scores S = scale·Q Kᵀ [H, Tl, T] with the mask applied (−inf).
at::Tensor scores(const at::Tensor& q, const at::Tensor& k_all, const CpCall& c, at::ScalarType type) {
  at::Tensor Q = q.to(type).permute({1, 0, 2});
  at::Tensor S = at::matmul(Q, k_all.transpose(1, 2)) * c.scale;
  if (c.mask.is_causal()) {
    at::Tensor qp = c.plan.positions(c.comm.rank()).unsqueeze(1), kp = all_positions(c.plan).unsqueeze(0);
    S.masked_fill_(kp.gt(qp).unsqueeze(0), -std::numeric_limits<double>::infinity());
  }
  return S;
}

class RingSelfAttention : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    check_mask(c.mask);
    const auto type = accumulate_type(q);
    const int64_t h = q.size(1);
    Tracked k_all(c.stats, heads_first(circulate(k, c, c.stats.bytes_sent_fwd), h, type));
    Tracked s(c.stats, scores(q, *k_all, c, type));
    at::Tensor lse = at::logsumexp(*s, -1);                                  // [H, Tl]
    Tracked prob(c.stats, at::exp(*s - lse.unsqueeze(-1)).nan_to_num(0.0));  // plain softmax
    Tracked v_all(c.stats, heads_first(circulate(v, c, c.stats.bytes_sent_fwd), h, type));
    at::Tensor out = at::matmul(*prob, *v_all).permute({1, 0, 2}).contiguous();
    return {out, lse.contiguous()};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    check_mask(c.mask);
    const auto type = accumulate_type(q);
    const int64_t h = q.size(1), hkv = k.size(1);
    Tracked k_all(c.stats, heads_first(circulate(k, c, c.stats.bytes_sent_bwd), h, type));
    Tracked s(c.stats, scores(q, *k_all, c, type));
    at::Tensor l = lse.to(type).unsqueeze(-1);
    Tracked prob(c.stats, at::where(at::isfinite(l), at::exp(*s - l), at::zeros({}, s->options())));
    Tracked v_all(c.stats, heads_first(circulate(v, c, c.stats.bytes_sent_bwd), h, type));
    at::Tensor dO = dout.to(type).permute({1, 0, 2});
    at::Tensor D = attention_row_sums(dout, out).to(type).unsqueeze(-1);
    Tracked ds(c.stats, *prob * (at::matmul(dO, v_all->transpose(1, 2)) - D));
    at::Tensor dq = (at::matmul(*ds, *k_all) * c.scale).permute({1, 0, 2}).contiguous();
    // Full-length dK/dV from this rank's queries, summed over all ranks, then sliced.
    auto group_sum = [&](const at::Tensor& g) {  // [H, T, D] -> [T, Hkv, D]
      return g.view({hkv, h / hkv, g.size(1), g.size(2)}).sum(1).permute({1, 0, 2}).contiguous();
    };
    Tracked dk_all(c.stats, group_sum(at::matmul(ds->transpose(1, 2), q.to(type).permute({1, 0, 2})) * c.scale));
    Tracked dv_all(c.stats, group_sum(at::matmul(prob->transpose(1, 2), dO)));
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

std::unique_ptr<CpStrategy> make_ring_self_attention() { return std::make_unique<RingSelfAttention>(); }

}  // namespace longhaul

// Ulysses (DeepSpeed-Ulysses): an all-to-all turns this rank's rows of all heads [Tl, H, D] into
// all rows of H/P heads [T, H/P, D]; local attention over the whole sequence; an all-to-all back.
// Needs H % P == 0. KV heads: H_kv % P == 0 splits them like the query heads; otherwise, when
// P % H_kv == 0, each KV head is replicated P/H_kv times (its gradients summed back); any other
// degree is an error that lists the degrees that would work.
#include <ATen/ATen.h>

#include "parallel/strategy.h"
#include "runtime/errors.h"

namespace longhaul {
namespace {

std::vector<int64_t> row_counts(const ShardPlan& plan) {
  std::vector<int64_t> rows(plan.P());
  for (int o = 0; o < plan.P(); ++o) rows[o] = plan.local_rows(o);
  return rows;
}

// [Tl, Hx, ...] of this rank → [T, Hx/P, ...]: rows of every rank (rank order), this rank's heads.
at::Tensor to_sequence(const at::Tensor& x, const CpCall& c, int64_t& bytes) {
  const int p = c.comm.size();
  const int64_t tl = x.size(0), hx = x.size(1);
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes[1] = hx / p;
  std::vector<int64_t> send_shape = {p, tl};
  send_shape.insert(send_shape.end(), sizes.begin() + 1, sizes.end());
  std::vector<int64_t> split = {tl, p, hx / p};
  split.insert(split.end(), x.sizes().begin() + 2, x.sizes().end());
  std::vector<int64_t> perm(split.size());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
  std::swap(perm[0], perm[1]);
  at::Tensor send = x.reshape(split).permute(perm).contiguous();  // [P, Tl, Hx/P, ...]
  std::vector<int64_t> flat = sizes;
  flat[0] = p * tl;
  send = send.view(flat);
  auto rows = row_counts(c.plan);
  std::vector<int64_t> out_shape = sizes;
  out_shape[0] = c.plan.T();
  at::Tensor out = at::empty(out_shape, x.options());
  c.comm.all_to_all(out, send, rows, std::vector<int64_t>(p, tl))->wait();
  bytes += Tracked::bytes_of(send) / p * (p - 1);
  return out;
}

// The inverse: [T, Hx/P, ...] (rows in rank order) → this rank's rows of all heads [Tl, Hx, ...].
at::Tensor to_heads(const at::Tensor& y, const CpCall& c, int64_t& bytes) {
  const int p = c.comm.size();
  const int64_t tl = c.plan.local_rows(), hp = y.size(1);
  auto rows = row_counts(c.plan);
  std::vector<int64_t> recv_shape = y.sizes().vec();
  recv_shape[0] = p * tl;
  at::Tensor recv = at::empty(recv_shape, y.options());
  at::Tensor send = y.contiguous();
  c.comm.all_to_all(recv, send, std::vector<int64_t>(p, tl), rows)->wait();
  bytes += (Tracked::bytes_of(send) - (send.numel() ? Tracked::bytes_of(send) / c.plan.T() * tl : 0));
  std::vector<int64_t> split = {p, tl};
  split.insert(split.end(), y.sizes().begin() + 1, y.sizes().end());
  std::vector<int64_t> perm(split.size());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
  std::swap(perm[0], perm[1]);
  std::vector<int64_t> out_shape = {tl, p * hp};
  out_shape.insert(out_shape.end(), y.sizes().begin() + 2, y.sizes().end());
  return recv.view(split).permute(perm).reshape(out_shape);
}

at::Tensor all_positions(const ShardPlan& plan) {
  std::vector<at::Tensor> pos;
  for (int o = 0; o < plan.P(); ++o) pos.push_back(plan.positions(o));
  return at::cat(pos);
}

class Ulysses : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    const int64_t rep = kv_replication(q.size(1), k.size(1), c.comm.size());
    int64_t& bytes = c.stats.bytes_sent_fwd;
    Tracked qh(c.stats, to_sequence(q, c, bytes));
    Tracked kh(c.stats, to_sequence(replicate(k, rep), c, bytes));
    Tracked vh(c.stats, to_sequence(replicate(v, rep), c, bytes));
    const at::Tensor pos = all_positions(c.plan);
    AttentionOutput o = attention_forward_partial(*qh, *kh, *vh, BlockView{pos, pos}, c.mask, c.scale);
    // The output is final for these heads: it travels back rounded once, in the input dtype.
    at::Tensor out = to_heads(o.out.to(q.scalar_type()), c, bytes);
    at::Tensor lse = to_heads(o.lse.transpose(0, 1).contiguous(), c, bytes).transpose(0, 1).contiguous();
    return {out.to(accumulate_type(q)), lse};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    const int64_t rep = kv_replication(q.size(1), k.size(1), c.comm.size());
    int64_t& bytes = c.stats.bytes_sent_bwd;
    const auto acc = accumulate_type(q);
    Tracked qh(c.stats, to_sequence(q, c, bytes));
    Tracked kh(c.stats, to_sequence(replicate(k, rep), c, bytes));
    Tracked vh(c.stats, to_sequence(replicate(v, rep), c, bytes));
    Tracked doh(c.stats, to_sequence(dout, c, bytes));
    // lse and the row sums D per head, rows first: [Tl, H, 2] → [T, H/P, 2].
    at::Tensor st = at::stack({lse.to(acc), attention_row_sums(dout, out).to(acc)}, -1).transpose(0, 1).contiguous();
    at::Tensor sth = to_sequence(st, c, bytes);
    at::Tensor lse_h = sth.select(2, 0).transpose(0, 1).contiguous(), d_h = sth.select(2, 1).transpose(0, 1).contiguous();
    const at::Tensor pos = all_positions(c.plan);
    AttentionGrads g = attention_backward_rowsums(*doh, *qh, *kh, *vh, d_h, lse_h, BlockView{pos, pos}, c.mask, c.scale);
    at::Tensor dq = to_heads(g.dq, c, bytes);
    at::Tensor dk = to_heads(g.dk, c, bytes), dv = to_heads(g.dv, c, bytes);
    if (rep > 1) {  // sum the gradients of the replicas of each KV head
      dk = dk.view({dk.size(0), k.size(1), rep, dk.size(2)}).sum(2);
      dv = dv.view({dv.size(0), v.size(1), rep, dv.size(2)}).sum(2);
    }
    return {dq, dk, dv};
  }

 private:
  static at::Tensor replicate(const at::Tensor& x, int64_t rep) { return rep == 1 ? x : x.repeat_interleave(rep, 1); }

  // 1 when H_kv splits over P; P/H_kv when KV heads must be replicated; otherwise an error.
  static int64_t kv_replication(int64_t h, int64_t hkv, int p) {
    if (h % p == 0 && hkv % p == 0) return 1;
    if (h % p == 0 && p % hkv == 0) return p / hkv;
    std::string ok;
    for (int64_t d = 1; d <= h; ++d)
      if (h % d == 0 && (hkv % d == 0 || d % hkv == 0)) ok += (ok.empty() ? "" : ", ") + std::to_string(d);
    throw InvalidArgument(detail::str_cat("strategy ulysses needs H % P == 0 and (H_kv % P == 0 or P % H_kv == 0); "
                                          "H = ", h, ", H_kv = ", hkv, ", P = ", p, ". Degrees that work: ", ok,
                                          " (use them as P, or as ulysses_degree with strategy hybrid)"));
  }
};

}  // namespace

std::unique_ptr<CpStrategy> make_ulysses() { return std::make_unique<Ulysses>(); }

}  // namespace longhaul

// Ulysses (DeepSpeed-Ulysses): an all-to-all turns this rank's rows of all heads [Tl, H, D] into
// all rows of H/P heads [T, H/P, D]; local attention over the whole sequence; an all-to-all back.
// Needs H % P == 0. KV heads: H_kv % P == 0 splits them like the query heads; otherwise, when
// P % H_kv == 0, each KV head is replicated P/H_kv times (its gradients summed back); any other
// degree is an error that lists the degrees that would work.
#include <ATen/ATen.h>

#include "parallel/head_exchange.h"
#include "parallel/strategy.h"

namespace longhaul {
namespace {

std::vector<int64_t> row_counts(const ShardPlan& plan) {
  std::vector<int64_t> rows(plan.P());
  for (int o = 0; o < plan.P(); ++o) rows[o] = plan.local_rows(o);
  return rows;
}

class Ulysses : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    const int64_t rep = kv_replication(q.size(1), k.size(1), c.comm.size(), "ulysses");
    const auto rows = row_counts(c.plan);
    int64_t& bytes = c.stats.bytes_sent_fwd;
    Tracked qh(c.stats, heads_to_rows(c.comm, q, rows, bytes));
    Tracked kh(c.stats, heads_to_rows(c.comm, replicate_kv(k, rep), rows, bytes));
    Tracked vh(c.stats, heads_to_rows(c.comm, replicate_kv(v, rep), rows, bytes));
    const at::Tensor& pos = c.plan.positions_in_rank_order();  // the all-to-all's row order
    AttentionOutput o = attention_forward_partial(*qh, *kh, *vh, BlockView{pos, pos}, c.mask, c.scale);
    // The output is final for these heads: it travels back rounded once, in the input dtype.
    at::Tensor out = rows_to_heads(c.comm, o.out.to(q.scalar_type()), rows, bytes);
    return {out.to(accumulate_type(q)), stats_to_heads(c.comm, o.lse, rows, bytes)};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    const int64_t rep = kv_replication(q.size(1), k.size(1), c.comm.size(), "ulysses");
    const auto rows = row_counts(c.plan);
    int64_t& bytes = c.stats.bytes_sent_bwd;
    const auto acc = accumulate_type(q);
    Tracked qh(c.stats, heads_to_rows(c.comm, q, rows, bytes));
    Tracked kh(c.stats, heads_to_rows(c.comm, replicate_kv(k, rep), rows, bytes));
    Tracked vh(c.stats, heads_to_rows(c.comm, replicate_kv(v, rep), rows, bytes));
    Tracked doh(c.stats, heads_to_rows(c.comm, dout, rows, bytes));
    // lse and the row sums D per head, rows first: [Tl, H, 2] → [T, H/P, 2].
    at::Tensor st = at::stack({lse.to(acc), attention_row_sums(dout, out).to(acc)}, -1).transpose(0, 1).contiguous();
    at::Tensor sth = heads_to_rows(c.comm, st, rows, bytes);
    at::Tensor lse_h = sth.select(2, 0).transpose(0, 1).contiguous(), d_h = sth.select(2, 1).transpose(0, 1).contiguous();
    // CUDA's fused backward takes out, not D: there out travels too (and is counted).
    Tracked outh(c.stats, q.is_cuda() ? heads_to_rows(c.comm, out.to(q.scalar_type()), rows, bytes) : at::Tensor());
    const at::Tensor& pos = c.plan.positions_in_rank_order();  // the all-to-all's row order
    AttentionGrads g = attention_backward({*doh, *qh, *kh, *vh, lse_h, *outh, d_h}, BlockView{pos, pos}, c.mask, c.scale);
    at::Tensor dq = rows_to_heads(c.comm, g.dq, rows, bytes);
    at::Tensor dk = rows_to_heads(c.comm, g.dk, rows, bytes), dv = rows_to_heads(c.comm, g.dv, rows, bytes);
    return {dq, sum_kv_replicas(dk, k.size(1), rep), sum_kv_replicas(dv, v.size(1), rep)};
  }
};

}  // namespace

std::unique_ptr<CpStrategy> make_ulysses() { return std::make_unique<Ulysses>(); }

}  // namespace longhaul

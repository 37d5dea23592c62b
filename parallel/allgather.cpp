// AllGatherKV: all-gather K and V (non-blocking; the local block is computed while they
// travel), attention of the local queries against the other ranks' keys, merged with the local
// part; backward gathers again and reduce-scatters dK/dV to their owners. Simple for irregular
// masks and cheap under GQA, where K,V are small.
#include <ATen/ATen.h>

#include <array>

#include "parallel/block_needs.h"
#include "parallel/strategy.h"

namespace longhaul {
namespace {

struct Gathered {
  Tracked k, v;
  WorkPtr work;
};

std::vector<int64_t> row_counts(const ShardPlan& plan) {
  std::vector<int64_t> rows(plan.P());
  for (int o = 0; o < plan.P(); ++o) rows[o] = plan.local_rows(o);
  return rows;
}

// Posts the all-gather of K and V (rows in rank order); counts the bytes this rank contributes.
Gathered start_gather(const at::Tensor& k, const at::Tensor& v, const CpCall& c, int64_t& bytes) {
  auto rows = row_counts(c.plan);
  Gathered g{Tracked(c.stats, at::empty({c.plan.T(), k.size(1), k.size(2)}, k.options())),
             Tracked(c.stats, at::empty({c.plan.T(), v.size(1), v.size(2)}, v.options())), nullptr};
  at::Tensor kc = k.contiguous(), vc = v.contiguous();
  auto w1 = c.comm.all_gather(*g.k, kc, rows), w2 = c.comm.all_gather(*g.v, vc, rows);
  g.work = std::make_shared<Work>("allgather K,V", c.comm.timeout(), 0);
  g.work->add_child(w1);
  g.work->add_child(w2);
  bytes += (Tracked::bytes_of(kc) + Tracked::bytes_of(vc)) * (c.plan.P() - 1);
  return g;
}

// The other ranks' rows of the gathered tensors (rank order): those before rank r and those after
// it, as [begin, begin + rows) spans. They are attended as views, so neither the gathered K,V nor
// their positions are copied (a concatenation would double the gathered K,V memory).
struct Span {
  int64_t begin, rows;
};
std::array<Span, 2> others(const ShardPlan& plan, int r) {
  const int64_t off = plan.rank_offset(r), end = off + plan.local_rows(r);
  return {Span{0, off}, Span{end, plan.T() - end}};
}

class AllGatherKV : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    const int r = c.comm.rank();
    const at::Tensor q_pos = c.plan.positions(r);
    Gathered g = start_gather(k, v, c, c.stats.bytes_sent_fwd);
    if (!c.overlap) g.work->wait();
    AttentionOutput mine = attention_forward_partial(q, k, v, BlockView{q_pos, q_pos}, c.mask, c.scale);
    Tracked out(c.stats, mine.out), lse(c.stats, mine.lse);
    g.work->wait();
    const at::Tensor& all_pos = c.plan.positions_in_rank_order();
    for (const Span& s : others(c.plan, r)) {
      if (s.rows == 0) continue;
      AttentionOutput rest =
          attention_forward_partial(q, g.k->narrow(0, s.begin, s.rows), g.v->narrow(0, s.begin, s.rows),
                                    BlockView{q_pos, all_pos.narrow(0, s.begin, s.rows)}, c.mask, c.scale);
      merge_into(*out, *lse, rest.out, rest.lse);
    }
    return {*out, *lse};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    const int r = c.comm.rank();
    Gathered g = start_gather(k, v, c, c.stats.bytes_sent_bwd);
    g.work->wait();
    const at::Tensor& all_pos = c.plan.positions_in_rank_order();
    AttentionGrads full = attention_backward(dout, q, *g.k, *g.v, out, lse, BlockView{c.plan.positions(r), all_pos},
                                             c.mask, c.scale);
    Tracked dk_all(c.stats, full.dk), dv_all(c.stats, full.dv);
    auto rows = row_counts(c.plan);
    at::Tensor dk = at::empty({k.size(0), k.size(1), k.size(2)}, full.dk.options());
    at::Tensor dv = at::empty({v.size(0), v.size(1), v.size(2)}, full.dv.options());
    auto w1 = c.comm.reduce_scatter(dk, *dk_all, rows), w2 = c.comm.reduce_scatter(dv, *dv_all, rows);
    wait_all({w1, w2});
    c.stats.bytes_sent_bwd += (Tracked::bytes_of(*dk_all) - Tracked::bytes_of(dk)) * 2;
    return {full.dq, dk, dv};
  }
};

}  // namespace

std::unique_ptr<CpStrategy> make_allgather_kv() { return std::make_unique<AllGatherKV>(); }

}  // namespace longhaul

// TokenRing (arXiv 2412.20501): K,V stay; each Q block travels r → r−1 round the ring, every rank
// computes the visiting queries against its own K,V and sends (out, lse) straight back to their
// owner, so both directions of every link carry data at once. Only the query rows that a rank
// further along still needs travel (under causal zigzag, a Q visiting lower ranks after the wrap
// carries only its late chunk), and only the rows that see this rank's keys send a result back.
// longhaul adds the backward: Q, dO, lse and the row sums D travel the same way, each visited rank
// adds to its own dK/dV and returns dQ partials (float32) to the owner.
#include <ATen/ATen.h>

#include <limits>

#include "parallel/in_flight.h"
#include "parallel/token_routes.h"
#include "parallel/strategy.h"

namespace longhaul {
namespace {

constexpr int kTagQ = 31, kTagOut = 32, kTagLse = 33, kTagDO = 34, kTagStat = 35, kTagDQ = 36, kTagO = 37;

at::Tensor index_tensor(const std::vector<int64_t>& v) { return at::tensor(at::ArrayRef<int64_t>(v), at::kLong); }

// Positions within `sub` of the rows of `sup` (both sorted indices, sub ⊆ sup).
at::Tensor positions_in(const std::vector<int64_t>& sub, const std::vector<int64_t>& sup) {
  std::vector<int64_t> idx;
  size_t j = 0;
  for (int64_t x : sub) {
    while (sup[j] != x) ++j;
    idx.push_back(static_cast<int64_t>(j));
  }
  return index_tensor(idx);
}

int64_t bytes(const at::Tensor& t) { return Tracked::bytes_of(t); }

class TokenRing : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    const int p = c.comm.size(), r = c.comm.rank();
    const TokenRoutes routes(c.plan, c.mask);
    const at::Tensor my_pos = c.plan.positions(r);
    const auto acc = accumulate_type(q);
    Tracked out(c.stats, at::zeros(q.sizes(), q.options().dtype(acc)));
    Tracked lse(c.stats, at::full({q.size(1), q.size(0)}, -std::numeric_limits<double>::infinity(),
                                  q.options().dtype(acc)));
    // The owner's receives of results: one per hop whose visited rank sees some of our rows.
    std::vector<std::tuple<std::vector<int64_t>, Tracked, Tracked, WorkPtr>> results;
    for (int t = 1; t < p; ++t) {
      auto rows = routes.result_rows(r, t);
      if (rows.empty()) continue;
      const int64_t n = static_cast<int64_t>(rows.size());
      Tracked o(c.stats, at::empty({n, q.size(1), q.size(2)}, q.options()));
      Tracked l(c.stats, at::empty({q.size(1), n}, q.options().dtype(acc)));
      WorkPtr w = c.comm.exchange({P2POp::recv(*o, routes.visited(r, t), kTagOut + 10 * t),
                                   P2POp::recv(*l, routes.visited(r, t), kTagLse + 10 * t)});
      results.emplace_back(std::move(rows), std::move(o), std::move(l), w);
    }
    // Travelling Q blocks: at step s this rank holds the block of origin (r + s) mod P.
    std::vector<int64_t> cur_rows(q.size(0));
    for (int64_t i = 0; i < q.size(0); ++i) cur_rows[i] = i;
    at::Tensor cur_q = q;
    InFlight sends(c.stats);
    for (int s = 0; s < p; ++s) {
      const int origin = (r + s) % p;
      WorkPtr incoming;
      std::vector<int64_t> next_rows;
      Tracked next_q(c.stats, at::Tensor());
      if (s + 1 < p) {
        // Forward what later hops need; receive the next block from the right.
        auto fwd_rows = routes.payload_rows(origin, s + 1);
        if (!fwd_rows.empty()) {
          at::Tensor payload = cur_q.index_select(0, rows_on(positions_in(fwd_rows, cur_rows), cur_q));
          sends.add(c.comm.send(payload, (r - 1 + p) % p, kTagQ), {payload});
          c.stats.bytes_sent_fwd += bytes(payload);
        }
        const int next_origin = (r + s + 1) % p;
        next_rows = routes.payload_rows(next_origin, s + 1);
        if (!next_rows.empty()) {
          next_q = Tracked(c.stats, at::empty({static_cast<int64_t>(next_rows.size()), q.size(1), q.size(2)},
                                              q.options()));
          incoming = c.comm.recv(*next_q, (r + 1) % p, kTagQ);
        }
        if (!c.overlap && incoming) incoming->wait();
      }
      if (s == 0) {
        AttentionOutput mine = attention_forward_partial(q, k, v, BlockView{my_pos, my_pos}, c.mask, c.scale);
        merge_into(*out, *lse, mine.out, mine.lse);
      } else if (cur_q.defined()) {
        auto rows = routes.result_rows(origin, s);
        if (!rows.empty()) {
          at::Tensor sel = rows_on(positions_in(rows, cur_rows), cur_q);
          at::Tensor qpos = c.plan.positions(origin).index_select(0, index_tensor(rows));
          AttentionOutput part = attention_forward_partial(cur_q.index_select(0, sel), k, v, BlockView{qpos, my_pos},
                                                           c.mask, c.scale);
          at::Tensor o = part.out.to(q.scalar_type()), l = part.lse;  // out rounded once to travel; lse float32
          sends.add(c.comm.exchange({P2POp::send(o, origin, kTagOut + 10 * s), P2POp::send(l, origin, kTagLse + 10 * s)}),
                    {o, l});
          c.stats.bytes_sent_fwd += bytes(o) + bytes(l);
        }
      }
      if (incoming) incoming->wait();
      cur_q = next_q.get();
      cur_rows = std::move(next_rows);
    }
    for (auto& [rows, o, l, w] : results) {
      w->wait();
      // Scatter the partial into full-size tensors (rows it lacks: lse = −∞) and merge.
      at::Tensor idx = rows_on(index_tensor(rows), *out);
      at::Tensor full_o = at::zeros(out->sizes(), out->options()).index_copy_(0, idx, o->to(out->scalar_type()));
      at::Tensor full_l = at::full(lse->sizes(), -std::numeric_limits<double>::infinity(), lse->options())
                              .index_copy_(1, idx, l->to(lse->scalar_type()));
      merge_into(*out, *lse, full_o, full_l);
    }
    sends.wait();
    return {*out, *lse};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    const int p = c.comm.size(), r = c.comm.rank();
    const TokenRoutes routes(c.plan, c.mask);
    const at::Tensor my_pos = c.plan.positions(r);
    const auto acc = accumulate_type(q);
    // Per-row statistics travel together: [lse; D] as [2, H, rows] float32 (float64 for float64).
    const at::Tensor stats = at::stack({lse.to(acc), attention_row_sums(dout, out).to(acc)});
    Tracked dq(c.stats, at::zeros(q.sizes(), q.options().dtype(acc)));
    Tracked dk(c.stats, at::zeros(k.sizes(), k.options().dtype(acc)));
    Tracked dv(c.stats, at::zeros(v.sizes(), v.options().dtype(acc)));
    struct Partial {
      std::vector<int64_t> rows;
      Tracked dq;
      WorkPtr work;
    };
    std::vector<Partial> results;
    for (int t = 1; t < p; ++t) {
      auto rows = routes.result_rows(r, t);
      if (rows.empty()) continue;
      Tracked g(c.stats, at::empty({static_cast<int64_t>(rows.size()), q.size(1), q.size(2)}, q.options().dtype(acc)));
      WorkPtr w = c.comm.recv(*g, routes.visited(r, t), kTagDQ + 10 * t);
      results.push_back(Partial{std::move(rows), std::move(g), w});
    }
    std::vector<int64_t> cur_rows(q.size(0));
    for (int64_t i = 0; i < q.size(0); ++i) cur_rows[i] = i;
    // CUDA's fused backward kernels take out, not D: there the owner's out rows travel with Q too.
    const bool send_out = q.is_cuda();
    at::Tensor cur_q = q, cur_do = dout, cur_st = stats, cur_out = send_out ? out.to(q.scalar_type()) : at::Tensor();
    InFlight sends(c.stats);
    for (int s = 0; s < p; ++s) {
      const int origin = (r + s) % p;
      WorkPtr incoming;
      std::vector<int64_t> next_rows;
      Tracked nq(c.stats, at::Tensor()), ndo(c.stats, at::Tensor()), nst(c.stats, at::Tensor()), nout(c.stats, at::Tensor());
      if (s + 1 < p) {
        auto fwd_rows = routes.payload_rows(origin, s + 1);
        if (!fwd_rows.empty()) {
          at::Tensor sel = rows_on(positions_in(fwd_rows, cur_rows), cur_q);
          at::Tensor pq = cur_q.index_select(0, sel), pdo = cur_do.index_select(0, sel),
                     pst = cur_st.index_select(2, sel).contiguous();
          const int left = (r - 1 + p) % p;
          std::vector<P2POp> ops{P2POp::send(pq, left, kTagQ), P2POp::send(pdo, left, kTagDO),
                                 P2POp::send(pst, left, kTagStat)};
          std::vector<at::Tensor> keep{pq, pdo, pst};
          if (send_out) {
            at::Tensor po = cur_out.index_select(0, sel);
            ops.push_back(P2POp::send(po, left, kTagO));
            keep.push_back(po);
          }
          sends.add(c.comm.exchange(ops), keep);
          for (const auto& t : keep) c.stats.bytes_sent_bwd += bytes(t);
        }
        const int next_origin = (r + s + 1) % p;
        next_rows = routes.payload_rows(next_origin, s + 1);
        if (!next_rows.empty()) {
          const int64_t n = static_cast<int64_t>(next_rows.size());
          nq = Tracked(c.stats, at::empty({n, q.size(1), q.size(2)}, q.options()));
          ndo = Tracked(c.stats, at::empty({n, q.size(1), q.size(2)}, dout.options()));
          nst = Tracked(c.stats, at::empty({2, q.size(1), n}, stats.options()));
          const int right = (r + 1) % p;
          std::vector<P2POp> ops{P2POp::recv(*nq, right, kTagQ), P2POp::recv(*ndo, right, kTagDO),
                                 P2POp::recv(*nst, right, kTagStat)};
          if (send_out) {
            nout = Tracked(c.stats, at::empty({n, q.size(1), q.size(2)}, q.options()));
            ops.push_back(P2POp::recv(*nout, right, kTagO));
          }
          incoming = c.comm.exchange(ops);
        }
        if (!c.overlap && incoming) incoming->wait();
      }
      if (s == 0) {
        AttentionGrads g = attention_backward_with_rowsums(dout, q, k, v, cur_out, stats[1], stats[0],
                                                           BlockView{my_pos, my_pos}, c.mask, c.scale);
        dq->add_(g.dq);
        dk->add_(g.dk);
        dv->add_(g.dv);
      } else if (cur_q.defined()) {
        auto rows = routes.result_rows(origin, s);
        if (!rows.empty()) {
          at::Tensor sel = rows_on(positions_in(rows, cur_rows), cur_q);
          at::Tensor qpos = c.plan.positions(origin).index_select(0, index_tensor(rows));
          at::Tensor st = cur_st.index_select(2, sel);
          const at::Tensor o_sel = send_out ? cur_out.index_select(0, sel) : at::Tensor();
          AttentionGrads g = attention_backward_with_rowsums(cur_do.index_select(0, sel), cur_q.index_select(0, sel), k,
                                                             v, o_sel, st[1], st[0], BlockView{qpos, my_pos}, c.mask,
                                                             c.scale);
          dk->add_(g.dk);
          dv->add_(g.dv);
          sends.add(c.comm.send(g.dq, origin, kTagDQ + 10 * s), {g.dq});
          c.stats.bytes_sent_bwd += bytes(g.dq);
        }
      }
      if (incoming) incoming->wait();
      cur_q = nq.get();
      cur_do = ndo.get();
      cur_st = nst.get();
      cur_out = nout.get();
      cur_rows = std::move(next_rows);
    }
    for (auto& part : results) {
      part.work->wait();
      dq->index_add_(0, rows_on(index_tensor(part.rows), *dq), *part.dq);
    }
    sends.wait();
    return {*dq, *dk, *dv};
  }
};

}  // namespace

std::unique_ptr<CpStrategy> make_token_ring() { return std::make_unique<TokenRing>(); }

}  // namespace longhaul

// TokenRing (arXiv 2412.20501): K,V stay; each Q block travels r → r−1 round the ring, every rank
// computes the visiting queries against its own K,V and sends (out, lse) straight back to their
// owner, so both directions of every link carry data at once. Only the query rows that a rank
// further along still needs travel (under causal zigzag, a Q visiting lower ranks after the wrap
// carries only its late chunk), and only the rows that see this rank's keys send a result back.
// longhaul adds the backward: Q, dO, lse and the row sums D travel the same way, each visited rank
// adds to its own dK/dV and returns dQ partials (float32) to the owner.
#include <ATen/ATen.h>

#include <limits>

#include "parallel/step_group.h"
#include "parallel/token_routes.h"
#include "parallel/strategy.h"

namespace longhaul {
namespace {

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

// Partial results for our rows, merged as they come: those received during one step are merged in
// the next, after it has posted its transfers (so the merge overlaps them), in hop order. Only two
// steps' partials are held at a time instead of all P − 1 (a P-fold output buffer on the device).
template <typename R>
class ArrivingResults {
 public:
  void arriving(R r) { arriving_.push_back(std::move(r)); }
  template <typename Merge>
  void merge_ready(Merge&& merge) {
    for (auto& r : ready_) merge(r);
    ready_.clear();
  }
  void step_done() {
    for (auto& r : arriving_) ready_.push_back(std::move(r));
    arriving_.clear();
  }

 private:
  std::vector<R> arriving_, ready_;
};

// Group s of every rank carries the queries of step s+1 (sent left, received from the right) and
// the results computed at step s-1, which go back to their owner; the owner receives the results
// of hop t in group t+1, the group in which the visited rank sends them. Group p carries only the
// last results.
class TokenRing : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    const int p = c.comm.size(), r = c.comm.rank();
    const int left = (r - 1 + p) % p, right = (r + 1) % p;
    const TokenRoutes routes(c.plan, c.mask);
    const at::Tensor my_pos = c.plan.positions(r);
    const auto acc = accumulate_type(q);
    Tracked out(c.stats, at::zeros(q.sizes(), q.options().dtype(acc)));
    Tracked lse(c.stats, at::full({q.size(1), q.size(0)}, -std::numeric_limits<double>::infinity(),
                                  q.options().dtype(acc)));
    struct Result {  // (out, lse) of some of our rows, computed by the rank visited at one hop
      std::vector<int64_t> rows;
      Tracked o, l;
    };
    ArrivingResults<Result> results;
    auto merge = [&](Result& res) {
      // Merge into the rows the partial covers only: gather them, merge, scatter them back (a
      // memory pass over those rows, not over the whole output).
      at::Tensor idx = rows_on(index_tensor(res.rows), *out);
      at::Tensor o = out->index_select(0, idx), l = lse->index_select(1, idx).contiguous();
      merge_into(o, l, res.o->to(out->scalar_type()), res.l->to(lse->scalar_type()));
      out->index_copy_(0, idx, o);
      lse->index_copy_(1, idx, l);
    };
    struct Leaving {  // the results computed at the previous step, going back to their owner
      at::Tensor o, l;
      int to = -1;
    } leaving;
    // Travelling Q blocks: at step s this rank holds the block of origin (r + s) mod P.
    std::vector<int64_t> cur_rows(q.size(0));
    for (int64_t i = 0; i < q.size(0); ++i) cur_rows[i] = i;
    at::Tensor cur_q = q;
    for (int s = 0; s <= p; ++s) {
      const int origin = (r + s) % p;
      StepGroup step(c.comm, c.stats, c.stats.bytes_sent_fwd);
      std::vector<int64_t> next_rows;
      Tracked next_q(c.stats, at::Tensor());
      if (s + 1 < p) {
        // Forward what later hops need; receive the next block from the right.
        auto fwd_rows = routes.payload_rows(origin, s + 1);
        if (!fwd_rows.empty())
          step.send_temporary(cur_q.index_select(0, rows_on(positions_in(fwd_rows, cur_rows), cur_q)), left, Tag::TokenQ);
        next_rows = routes.payload_rows((r + s + 1) % p, s + 1);
        if (!next_rows.empty())
          next_q = step.recv({static_cast<int64_t>(next_rows.size()), q.size(1), q.size(2)}, q.options(), right,
                             Tag::TokenQ);
      }
      if (leaving.to >= 0) {
        step.send_temporary(leaving.o, leaving.to, Tag::TokenOut);
        step.send_temporary(leaving.l, leaving.to, Tag::TokenLse);
        leaving = Leaving{};
      }
      if (s >= 2) {  // our rows' results of hop s-1
        auto rows = routes.result_rows(r, s - 1);
        if (!rows.empty()) {
          const int64_t n = static_cast<int64_t>(rows.size());
          const int from = routes.visited(r, s - 1);
          Tracked o = step.recv({n, q.size(1), q.size(2)}, q.options(), from, Tag::TokenOut);
          Tracked l = step.recv({q.size(1), n}, q.options().dtype(acc), from, Tag::TokenLse);
          results.arriving(Result{std::move(rows), std::move(o), std::move(l)});
        }
      }
      step.post();
      if (!c.overlap) step.wait();
      results.merge_ready(merge);
      if (s == 0) {
        AttentionOutput mine = attention_forward_partial(q, k, v, BlockView{my_pos, my_pos}, c.mask, c.scale);
        merge_into(*out, *lse, mine.out, mine.lse);
      } else if (s < p && cur_q.defined()) {
        auto rows = routes.result_rows(origin, s);
        if (!rows.empty()) {
          at::Tensor sel = rows_on(positions_in(rows, cur_rows), cur_q);
          at::Tensor qpos = c.plan.positions(origin).index_select(0, index_tensor(rows));
          AttentionOutput part = attention_forward_partial(cur_q.index_select(0, sel), k, v, BlockView{qpos, my_pos},
                                                           c.mask, c.scale);
          // out rounded once to travel; lse float32
          leaving = Leaving{part.out.to(q.scalar_type()), part.lse, origin};
        }
      }
      step.wait();
      results.step_done();
      cur_q = next_q.get();
      cur_rows = std::move(next_rows);
    }
    results.merge_ready(merge);
    return {*out, *lse};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    const int p = c.comm.size(), r = c.comm.rank();
    const int left = (r - 1 + p) % p, right = (r + 1) % p;
    const TokenRoutes routes(c.plan, c.mask);
    const at::Tensor my_pos = c.plan.positions(r);
    const auto acc = accumulate_type(q);
    // Per-row statistics travel together: [lse; D] as [2, H, rows] float32 (float64 for float64).
    const at::Tensor stats = at::stack({lse.to(acc), attention_row_sums(dout, out).to(acc)});
    Tracked dq(c.stats, at::zeros(q.sizes(), q.options().dtype(acc)));
    Tracked dk(c.stats, at::zeros(k.sizes(), k.options().dtype(acc)));
    Tracked dv(c.stats, at::zeros(v.sizes(), v.options().dtype(acc)));
    struct Partial {  // dQ of some of our rows from the rank visited at one hop
      std::vector<int64_t> rows;
      Tracked dq;
    };
    ArrivingResults<Partial> results;
    auto merge = [&](Partial& part) { dq->index_add_(0, rows_on(index_tensor(part.rows), *dq), *part.dq); };
    struct Leaving {
      at::Tensor dq;
      int to = -1;
    } leaving;
    std::vector<int64_t> cur_rows(q.size(0));
    for (int64_t i = 0; i < q.size(0); ++i) cur_rows[i] = i;
    // out never travels, on any device: D carries all the backward needs of it (CUDA's fused
    // kernels, which read out, are given one made from D; see attention_backward).
    at::Tensor cur_q = q, cur_do = dout, cur_st = stats;
    for (int s = 0; s <= p; ++s) {
      const int origin = (r + s) % p;
      StepGroup step(c.comm, c.stats, c.stats.bytes_sent_bwd);
      std::vector<int64_t> next_rows;
      Tracked nq(c.stats, at::Tensor()), ndo(c.stats, at::Tensor()), nst(c.stats, at::Tensor());
      if (s + 1 < p) {
        auto fwd_rows = routes.payload_rows(origin, s + 1);
        if (!fwd_rows.empty()) {
          at::Tensor sel = rows_on(positions_in(fwd_rows, cur_rows), cur_q);
          step.send_temporary(cur_q.index_select(0, sel), left, Tag::TokenQ);
          step.send_temporary(cur_do.index_select(0, sel), left, Tag::TokenDO);
          step.send_temporary(cur_st.index_select(2, sel).contiguous(), left, Tag::TokenStat);
        }
        next_rows = routes.payload_rows((r + s + 1) % p, s + 1);
        if (!next_rows.empty()) {
          const int64_t n = static_cast<int64_t>(next_rows.size());
          nq = step.recv({n, q.size(1), q.size(2)}, q.options(), right, Tag::TokenQ);
          ndo = step.recv({n, q.size(1), q.size(2)}, dout.options(), right, Tag::TokenDO);
          nst = step.recv({2, q.size(1), n}, stats.options(), right, Tag::TokenStat);
        }
      }
      if (leaving.to >= 0) {
        step.send_temporary(leaving.dq, leaving.to, Tag::TokenDQ);
        leaving = Leaving{};
      }
      if (s >= 2) {  // dQ partials of our rows from hop s-1
        auto rows = routes.result_rows(r, s - 1);
        if (!rows.empty()) {
          Tracked g = step.recv({static_cast<int64_t>(rows.size()), q.size(1), q.size(2)}, q.options().dtype(acc),
                                routes.visited(r, s - 1), Tag::TokenDQ);
          results.arriving(Partial{std::move(rows), std::move(g)});
        }
      }
      step.post();
      if (!c.overlap) step.wait();
      results.merge_ready(merge);
      if (s == 0) {
        // The owner's own rows: their out is here (exact for the kernels that read it).
        AttentionGrads g = attention_backward({dout, q, k, v, stats[0], out, stats[1]}, BlockView{my_pos, my_pos},
                                              c.mask, c.scale);
        dq->add_(g.dq);
        dk->add_(g.dk);
        dv->add_(g.dv);
      } else if (s < p && cur_q.defined()) {
        auto rows = routes.result_rows(origin, s);
        if (!rows.empty()) {
          at::Tensor sel = rows_on(positions_in(rows, cur_rows), cur_q);
          at::Tensor qpos = c.plan.positions(origin).index_select(0, index_tensor(rows));
          at::Tensor st = cur_st.index_select(2, sel);
          AttentionGrads g = attention_backward(
              {cur_do.index_select(0, sel), cur_q.index_select(0, sel), k, v, st[0], at::Tensor(), st[1]},
              BlockView{qpos, my_pos}, c.mask, c.scale);
          dk->add_(g.dk);
          dv->add_(g.dv);
          leaving = Leaving{g.dq, origin};
        }
      }
      step.wait();
      cur_q = nq.get();
      cur_do = ndo.get();
      cur_st = nst.get();
      cur_rows = std::move(next_rows);
      results.step_done();
    }
    results.merge_ready(merge);
    return {*dq, *dk, *dv};
  }
};

}  // namespace

std::unique_ptr<CpStrategy> make_token_ring() { return std::make_unique<TokenRing>(); }

}  // namespace longhaul

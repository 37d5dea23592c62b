// Ring: K,V blocks travel r → r+1 with non-blocking P2P, double-buffered (the next block is in
// flight while the current one is computed), partial results merged exactly with their LSE in
// float32. Only the key rows another rank sees travel (all of them under a causal mask; only the
// halo under a sliding window on a contiguous layout), and a block no later rank needs is not
// sent at all. Backward: K,V travel again; the float32 dK/dV accumulators of a block start at its
// first visited rank, follow it, and go home after the last rank that needs it.
#include <ATen/ATen.h>

#include "parallel/block_needs.h"
#include "parallel/in_flight.h"
#include "parallel/strategy.h"
#include "runtime/errors.h"

namespace longhaul {
namespace {

constexpr int kTagK = 11, kTagV = 12, kTagDK = 13, kTagDV = 14, kTagDKHome = 15, kTagDVHome = 16;

int64_t bytes_of(const at::Tensor& t) { return Tracked::bytes_of(t); }

// Position of `r` after `origin` along the ring: 0 for the owner, 1 for the next rank, …
int hop(int r, int origin, int p) { return (r - origin + p) % p; }

// The travelling part of every rank's block: row indices, their global positions, row count.
struct Travelling {
  Travelling(const BlockNeeds& needs, const ShardPlan& plan) {
    for (int o = 0; o < plan.P(); ++o) {
      const auto& rows = needs.travelling_rows(o);
      idx.push_back(at::tensor(at::ArrayRef<int64_t>(rows), at::kLong));
      pos.push_back(plan.positions(o).index_select(0, idx.back()));
      whole.push_back(needs.travels_whole(o));
    }
  }
  int64_t rows(int o) const { return idx[o].numel(); }
  at::Tensor select(const at::Tensor& x, int o) const { return whole[o] ? x : x.index_select(0, rows_on(idx[o], x)); }
  std::vector<at::Tensor> idx, pos;
  std::vector<bool> whole;
};

class Ring : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    const int p = c.comm.size(), r = c.comm.rank();
    const BlockNeeds needs(c.plan, c.mask);
    const Travelling tr(needs, c.plan);
    const at::Tensor q_pos = c.plan.positions(r);
    const auto acc_type = accumulate_type(q);
    Tracked out(c.stats, at::zeros({q.size(0), q.size(1), q.size(2)}, q.options().dtype(acc_type)));
    Tracked lse(c.stats, at::full({q.size(1), q.size(0)}, -std::numeric_limits<double>::infinity(),
                                  q.options().dtype(acc_type)));
    at::Tensor cur_k = tr.select(k, r), cur_v = tr.select(v, r);  // what travels of this rank's block
    for (int s = 0; s < p; ++s) {
      const int origin = (r - s + p) % p;  // whose block this rank holds at step s
      // Post the transfer of step s+1: send what we hold on, receive the previous rank's block.
      WorkPtr transfer;
      Tracked next_k(c.stats, at::Tensor()), next_v(c.stats, at::Tensor());
      if (s + 1 < p) {
        std::vector<P2POp> ops;
        if (needs.last_hop(origin) > hop(r, origin, p)) {  // a later rank needs this block
          ops.push_back(P2POp::send(cur_k, (r + 1) % p, kTagK));
          ops.push_back(P2POp::send(cur_v, (r + 1) % p, kTagV));
          c.stats.bytes_sent_fwd += bytes_of(cur_k) + bytes_of(cur_v);
        }
        const int incoming = (r - s - 1 + 2 * p) % p;  // origin of the block the left rank holds now
        if (needs.last_hop(incoming) >= hop(r, incoming, p)) {
          next_k = Tracked(c.stats, at::empty({tr.rows(incoming), k.size(1), k.size(2)}, k.options()));
          next_v = Tracked(c.stats, at::empty({tr.rows(incoming), v.size(1), v.size(2)}, v.options()));
          ops.push_back(P2POp::recv(*next_k, (r - 1 + p) % p, kTagK));
          ops.push_back(P2POp::recv(*next_v, (r - 1 + p) % p, kTagV));
        }
        if (!ops.empty()) transfer = c.comm.exchange(ops);
        if (!c.overlap && transfer) transfer->wait();
      }
      if (s == 0) {  // this rank's own block, whole
        AttentionOutput part = attention_forward_partial(q, k, v, BlockView{q_pos, q_pos}, c.mask, c.scale);
        merge_into(*out, *lse, part.out, part.lse);
      } else if (cur_k.defined() && needs.needed(r, origin)) {
        AttentionOutput part = attention_forward_partial(q, cur_k, cur_v, BlockView{q_pos, tr.pos[origin]}, c.mask, c.scale);
        merge_into(*out, *lse, part.out, part.lse);
      }
      if (transfer) transfer->wait();
      cur_k = next_k.get();
      cur_v = next_v.get();
    }
    return {*out, *lse};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    const int p = c.comm.size(), r = c.comm.rank();
    const int right = (r + 1) % p, left = (r - 1 + p) % p;
    const BlockNeeds needs(c.plan, c.mask);
    const Travelling tr(needs, c.plan);
    const at::Tensor q_pos = c.plan.positions(r);
    const auto acc_type = accumulate_type(q);
    const at::Tensor row_sums = attention_row_sums(dout, out);
    // This rank's own block first: the whole of its dK/dV from its own queries.
    AttentionGrads own = attention_backward_with_rowsums(dout, q, k, v, out, row_sums, lse, BlockView{q_pos, q_pos},
                                                         c.mask, c.scale);
    Tracked dq(c.stats, own.dq);
    Tracked home_dk(c.stats, own.dk), home_dv(c.stats, own.dv);
    // Its travelling rows come home from the last rank that needed them.
    WorkPtr home_in;
    Tracked home_acc_k(c.stats, at::Tensor()), home_acc_v(c.stats, at::Tensor());
    if (needs.last_hop(r) > 0) {
      const int last = (r + needs.last_hop(r)) % p;
      home_acc_k = Tracked(c.stats, at::empty({tr.rows(r), k.size(1), k.size(2)}, k.options().dtype(acc_type)));
      home_acc_v = Tracked(c.stats, at::empty({tr.rows(r), v.size(1), v.size(2)}, v.options().dtype(acc_type)));
      home_in = c.comm.exchange({P2POp::recv(*home_acc_k, last, kTagDKHome), P2POp::recv(*home_acc_v, last, kTagDVHome)});
    }
    at::Tensor cur_k = tr.select(k, r), cur_v = tr.select(v, r);
    WorkPtr acc_in;  // the accumulators of the held block, one step behind it
    Tracked in_dk(c.stats, at::Tensor()), in_dv(c.stats, at::Tensor());
    InFlight acc_sends(c.stats);
    for (int s = 0; s < p; ++s) {
      const int origin = (r - s + p) % p;
      WorkPtr transfer;
      Tracked next_k(c.stats, at::Tensor()), next_v(c.stats, at::Tensor());
      const bool forward_on = needs.last_hop(origin) > hop(r, origin, p);
      if (s + 1 < p) {
        std::vector<P2POp> ops;
        if (cur_k.defined() && forward_on) {
          ops.push_back(P2POp::send(cur_k, right, kTagK));
          ops.push_back(P2POp::send(cur_v, right, kTagV));
          c.stats.bytes_sent_bwd += bytes_of(cur_k) + bytes_of(cur_v);
        }
        const int incoming = (r - s - 1 + 2 * p) % p;
        if (needs.last_hop(incoming) >= hop(r, incoming, p)) {
          next_k = Tracked(c.stats, at::empty({tr.rows(incoming), k.size(1), k.size(2)}, k.options()));
          next_v = Tracked(c.stats, at::empty({tr.rows(incoming), v.size(1), v.size(2)}, v.options()));
          ops.push_back(P2POp::recv(*next_k, left, kTagK));
          ops.push_back(P2POp::recv(*next_v, left, kTagV));
        }
        if (!ops.empty()) transfer = c.comm.exchange(ops);
        if (!c.overlap && transfer) transfer->wait();
      }
      if (s > 0 && cur_k.defined()) {
        // This rank's contribution to the held block's dK/dV (none when it only passes it on).
        at::Tensor dk_acc, dv_acc;
        if (needs.needed(r, origin)) {
          AttentionGrads g = attention_backward_with_rowsums(dout, q, cur_k, cur_v, out, row_sums, lse,
                                                        BlockView{q_pos, tr.pos[origin]}, c.mask, c.scale);
          dq->add_(g.dq);
          dk_acc = g.dk;
          dv_acc = g.dv;
        } else {
          dk_acc = at::zeros(cur_k.sizes(), cur_k.options().dtype(acc_type));
          dv_acc = at::zeros(cur_v.sizes(), cur_v.options().dtype(acc_type));
        }
        if (s > 1) {  // accumulators started at the first visited rank travel here
          acc_in->wait();
          dk_acc = in_dk->add_(dk_acc);
          dv_acc = in_dv->add_(dv_acc);
        }
        const bool onward = forward_on;
        const int to = onward ? right : origin;
        acc_sends.add(c.comm.exchange({P2POp::send(dk_acc, to, onward ? kTagDK : kTagDKHome),
                                       P2POp::send(dv_acc, to, onward ? kTagDV : kTagDVHome)}),
                      {dk_acc, dv_acc});
        c.stats.bytes_sent_bwd += bytes_of(dk_acc) + bytes_of(dv_acc);
      }
      if (transfer) transfer->wait();
      // The accumulators of the block arriving for step s+1 follow from the left (from hop 2 on).
      if (s + 1 < p && s + 1 > 1 && next_k.get().defined()) {
        in_dk = Tracked(c.stats, at::empty(next_k.get().sizes(), next_k.get().options().dtype(acc_type)));
        in_dv = Tracked(c.stats, at::empty(next_v.get().sizes(), next_v.get().options().dtype(acc_type)));
        acc_in = c.comm.exchange({P2POp::recv(*in_dk, left, kTagDK), P2POp::recv(*in_dv, left, kTagDV)});
      }
      cur_k = next_k.get();
      cur_v = next_v.get();
    }
    if (home_in) {
      home_in->wait();
      home_dk->index_add_(0, rows_on(tr.idx[r], *home_dk), *home_acc_k);
      home_dv->index_add_(0, rows_on(tr.idx[r], *home_dv), *home_acc_v);
    }
    acc_sends.wait();
    return {*dq, *home_dk, *home_dv};
  }
};

}  // namespace

std::unique_ptr<CpStrategy> make_ring() { return std::make_unique<Ring>(); }

}  // namespace longhaul

// Ring: K,V blocks travel r → r+1 with non-blocking P2P, double-buffered (the next block is in
// flight while the current one is computed), partial results merged exactly with their LSE in
// float32. Backward: K,V travel again; the float32 dK/dV accumulators of a block follow it and
// go back to their owner after the last rank that needs it. A block no later rank needs is not
// sent (steps empty under the mask move nothing).
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

class Ring : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    const int p = c.comm.size(), r = c.comm.rank();
    const BlockNeeds needs(c.plan, c.mask);
    const at::Tensor q_pos = c.plan.positions(r);
    const auto acc_type = accumulate_type(q);
    Tracked out(c.stats, at::zeros({q.size(0), q.size(1), q.size(2)}, q.options().dtype(acc_type)));
    Tracked lse(c.stats, at::full({q.size(1), q.size(0)}, -std::numeric_limits<double>::infinity(),
                                  q.options().dtype(acc_type)));
    at::Tensor cur_k = k, cur_v = v;
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
          const int64_t rows = c.plan.local_rows(incoming);
          next_k = Tracked(c.stats, at::empty({rows, k.size(1), k.size(2)}, k.options()));
          next_v = Tracked(c.stats, at::empty({rows, v.size(1), v.size(2)}, v.options()));
          ops.push_back(P2POp::recv(*next_k, (r - 1 + p) % p, kTagK));
          ops.push_back(P2POp::recv(*next_v, (r - 1 + p) % p, kTagV));
        }
        if (!ops.empty()) transfer = c.comm.exchange(ops);
        if (!c.overlap && transfer) transfer->wait();
      }
      if (cur_k.defined() && needs.needed(r, origin)) {
        BlockView view{q_pos, c.plan.positions(origin)};
        AttentionOutput part = attention_forward_partial(q, cur_k, cur_v, view, c.mask, c.scale);
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
    const at::Tensor q_pos = c.plan.positions(r);
    const auto acc_type = accumulate_type(q);
    const at::Tensor row_sums = attention_row_sums(dout, out);
    Tracked dq(c.stats, at::zeros(q.sizes(), q.options().dtype(acc_type)));
    at::Tensor cur_k = k, cur_v = v;
    // The accumulators of the block this rank holds (they arrive from the left, one step behind).
    WorkPtr acc_in;
    Tracked in_dk(c.stats, at::Tensor()), in_dv(c.stats, at::Tensor());
    InFlight acc_sends(c.stats);
    Tracked home_dk(c.stats, at::zeros(k.sizes(), k.options().dtype(acc_type)));
    Tracked home_dv(c.stats, at::zeros(v.sizes(), v.options().dtype(acc_type)));
    for (int s = 0; s < p; ++s) {
      const int origin = (r - s + p) % p;
      const bool holding = cur_k.defined();
      WorkPtr transfer;
      Tracked next_k(c.stats, at::Tensor()), next_v(c.stats, at::Tensor());
      const bool forward_on = needs.last_hop(origin) > hop(r, origin, p);
      if (s + 1 < p) {
        std::vector<P2POp> ops;
        if (holding && forward_on) {
          ops.push_back(P2POp::send(cur_k, right, kTagK));
          ops.push_back(P2POp::send(cur_v, right, kTagV));
          c.stats.bytes_sent_bwd += bytes_of(cur_k) + bytes_of(cur_v);
        }
        const int incoming = (r - s - 1 + 2 * p) % p;
        if (needs.last_hop(incoming) >= hop(r, incoming, p)) {
          const int64_t rows = c.plan.local_rows(incoming);
          next_k = Tracked(c.stats, at::empty({rows, k.size(1), k.size(2)}, k.options()));
          next_v = Tracked(c.stats, at::empty({rows, v.size(1), v.size(2)}, v.options()));
          ops.push_back(P2POp::recv(*next_k, left, kTagK));
          ops.push_back(P2POp::recv(*next_v, left, kTagV));
        }
        if (!ops.empty()) transfer = c.comm.exchange(ops);
        if (!c.overlap && transfer) transfer->wait();
      }
      if (holding) {
        // This rank's contribution to the held block's dK/dV.
        at::Tensor dk_part, dv_part;
        if (needs.needed(r, origin)) {
          BlockView view{q_pos, c.plan.positions(origin)};
          AttentionGrads g = attention_backward_rowsums(dout, q, cur_k, cur_v, row_sums, lse, view, c.mask, c.scale);
          dq->add_(g.dq);
          dk_part = g.dk;
          dv_part = g.dv;
        }
        // Add to the accumulators that travelled here (none at the owner's own step).
        at::Tensor dk_acc, dv_acc;
        if (s == 0) {
          dk_acc = dk_part.defined() ? dk_part : at::zeros(cur_k.sizes(), cur_k.options().dtype(acc_type));
          dv_acc = dv_part.defined() ? dv_part : at::zeros(cur_v.sizes(), cur_v.options().dtype(acc_type));
        } else {
          acc_in->wait();
          dk_acc = dk_part.defined() ? in_dk->add_(dk_part) : *in_dk;
          dv_acc = dv_part.defined() ? in_dv->add_(dv_part) : *in_dv;
        }
        // Pass them on with the block, or home once no later rank needs it.
        if (forward_on) {
          acc_sends.add(c.comm.exchange({P2POp::send(dk_acc, right, kTagDK), P2POp::send(dv_acc, right, kTagDV)}),
                        {dk_acc, dv_acc});
          c.stats.bytes_sent_bwd += bytes_of(dk_acc) + bytes_of(dv_acc);
        } else if (origin != r) {
          acc_sends.add(c.comm.exchange({P2POp::send(dk_acc, origin, kTagDKHome), P2POp::send(dv_acc, origin, kTagDVHome)}),
                        {dk_acc, dv_acc});
          c.stats.bytes_sent_bwd += bytes_of(dk_acc) + bytes_of(dv_acc);
        } else {
          home_dk->copy_(dk_acc);  // nobody else needed this rank's block
          home_dv->copy_(dv_acc);
        }
      }
      if (transfer) transfer->wait();
      // The accumulators of the block arriving for step s+1 come from the left after its compute.
      if (s + 1 < p && next_k.get().defined()) {
        in_dk = Tracked(c.stats, at::empty(next_k.get().sizes(), next_k.get().options().dtype(acc_type)));
        in_dv = Tracked(c.stats, at::empty(next_v.get().sizes(), next_v.get().options().dtype(acc_type)));
        acc_in = c.comm.exchange({P2POp::recv(*in_dk, left, kTagDK), P2POp::recv(*in_dv, left, kTagDV)});
      }
      cur_k = next_k.get();
      cur_v = next_v.get();
    }
    // This rank's own block comes home from the last rank that needed it.
    if (needs.last_hop(r) > 0) {
      const int last = (r + needs.last_hop(r)) % p;
      c.comm.exchange({P2POp::recv(*home_dk, last, kTagDKHome), P2POp::recv(*home_dv, last, kTagDVHome)})->wait();
    }
    acc_sends.wait();
    return {*dq, *home_dk, *home_dv};
  }
};

}  // namespace

std::unique_ptr<CpStrategy> make_ring() { return std::make_unique<Ring>(); }

}  // namespace longhaul

// Ring: K,V blocks travel r → r+1 with non-blocking P2P, double-buffered (the next block is in
// flight while the current one is computed), partial results merged exactly with their LSE in
// float32. Only the key rows another rank sees travel (all of them under a causal mask; only the
// halo under a sliding window on a contiguous layout), and a block no later rank needs is not
// sent at all. Backward: K,V travel again; the float32 dK/dV accumulators of a block start at its
// first visited rank, follow it, and go home after the last rank that needs it.
#include <ATen/ATen.h>

#include "parallel/block_needs.h"
#include "parallel/step_group.h"
#include "parallel/strategy.h"
#include "core/errors.h"

namespace longhaul {
namespace {

// Position of `r` after `origin` along the ring: 0 for the owner, 1 for the next rank, …
int hop(int r, int origin, int p) { return (r - origin + p) % p; }

// The travelling part of every rank's block: row indices, their global positions, row count.
struct Travelling {
  Travelling(const BlockNeeds& needs, const ShardPlan& plan) {
    for (int o = 0; o < plan.P(); ++o) {
      idx.push_back(needs.travelling_index(o));
      pos.push_back(needs.travelling_positions(o));
      whole.push_back(needs.travels_whole(o));
    }
  }
  int64_t rows(int o) const { return idx[o].numel(); }
  at::Tensor select(const at::Tensor& x, int o) const { return whole[o] ? x : x.index_select(0, rows_on(idx[o], x)); }
  std::vector<at::Tensor> idx, pos;
  std::vector<bool> whole;
};

// What both passes know before the ring starts: the neighbours, which rank needs which rows, the
// travelling part of every block, this rank's query positions and the keys each of them sees.
struct RingSetup {
  explicit RingSetup(const CpCall& c)
      : p(c.comm.size()), r(c.comm.rank()), right((r + 1) % p), left((r - 1 + p) % p),
        shared_needs(BlockNeeds::shared(c.plan, c.mask)), needs(*shared_needs), tr(needs, c.plan),
        q_pos(c.plan.positions(r).contiguous()),
        q_keys(c.mask.spec().keys_of_rows(q_pos.data_ptr<int64_t>(), q_pos.numel())) {}
  int p, r, right, left;
  std::shared_ptr<const BlockNeeds> shared_needs;
  const BlockNeeds& needs;
  Travelling tr;
  at::Tensor q_pos;
  RowKeys q_keys;
};

// The local query rows [begin, begin + rows) that may see a visiting block: a step computes and
// merges only those (the others' partial results would be empty), which under document masks is
// a few rows of the shard instead of all of them.
struct Rows {
  int64_t begin, rows;
  at::Tensor of(const at::Tensor& x, int64_t dim = 0) const { return x.narrow(dim, begin, rows); }
};
Rows rows_seeing(const RingSetup& setup, int origin) {
  const auto [first, last] = setup.needs.rows_seeing(setup.q_keys, origin);
  return {first, last - first};
}

// merge_into for the accumulator rows [begin, begin + rows): out's rows are contiguous views, the
// [H, T] lse's columns are merged through a contiguous copy.
void merge_rows(at::Tensor& out, at::Tensor& lse, const Rows& at_rows, const AttentionOutput& part) {
  if (at_rows.begin == 0 && at_rows.rows == out.size(0)) return merge_into(out, lse, part.out, part.lse);
  at::Tensor o = at_rows.of(out), l = at_rows.of(lse, 1).contiguous();
  merge_into(o, l, part.out, part.lse);
  at_rows.of(lse, 1).copy_(l);
}

class Ring : public CpStrategy {
 public:
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    const RingSetup setup(c);
    const auto& [p, r, right, left, held_needs, needs, tr, q_pos, q_keys] = setup;
    const auto acc_type = accumulate_type(q);
    Tracked out(c.stats, at::zeros({q.size(0), q.size(1), q.size(2)}, q.options().dtype(acc_type)));
    Tracked lse(c.stats, at::full({q.size(1), q.size(0)}, -std::numeric_limits<double>::infinity(),
                                  q.options().dtype(acc_type)));
    at::Tensor cur_k = tr.select(k, r), cur_v = tr.select(v, r);  // what travels of this rank's block
    for (int s = 0; s < p; ++s) {
      const int origin = (r - s + p) % p;  // whose block this rank holds at step s
      // Step s's group: pass on what we hold, receive the block of step s+1 from the left.
      StepGroup step(c.comm, c.stats, c.stats.bytes_sent_fwd);
      Tracked next_k(c.stats, at::Tensor()), next_v(c.stats, at::Tensor());
      if (s + 1 < p) {
        if (needs.last_hop(origin) > hop(r, origin, p)) {  // a later rank needs this block
          step.send(cur_k, right, Tag::RingK);
          step.send(cur_v, right, Tag::RingV);
        }
        const int incoming = (r - s - 1 + 2 * p) % p;  // origin of the block the left rank holds now
        if (needs.last_hop(incoming) >= hop(r, incoming, p)) {
          next_k = step.recv({tr.rows(incoming), k.size(1), k.size(2)}, k.options(), left, Tag::RingK);
          next_v = step.recv({tr.rows(incoming), v.size(1), v.size(2)}, v.options(), left, Tag::RingV);
        }
      }
      step.post();
      if (!c.overlap) step.wait();
      if (s == 0) {  // this rank's own block, whole
        AttentionOutput part = attention_forward_partial(q, k, v, BlockView{q_pos, q_pos}, c.mask, c.scale);
        merge_into(*out, *lse, part.out, part.lse);
      } else if (cur_k.defined() && needs.needed(r, origin)) {
        const Rows seeing = rows_seeing(setup, origin);
        if (seeing.rows > 0) {
          AttentionOutput part = attention_forward_partial(seeing.of(q), cur_k, cur_v,
                                                           BlockView{seeing.of(q_pos), tr.pos[origin]}, c.mask, c.scale);
          merge_rows(*out, *lse, seeing, part);
        }
      }
      step.wait();
      cur_k = next_k.get();
      cur_v = next_v.get();
    }
    return {*out, *lse};
  }

  // Group s of every rank carries: the K,V of step s+1 (as in the forward), the dK/dV
  // accumulators of the block held at step s-1 (onward to the right, or home to the block's owner
  // from its last rank), and receives their counterparts. A block's accumulators therefore travel
  // one group behind it, and an owner receives its home accumulators in group last_hop + 1, the
  // group in which its last rank sends them; group p carries only the last accumulators.
  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    const RingSetup setup(c);
    const auto& [p, r, right, left, held_needs, needs, tr, q_pos, q_keys] = setup;
    const auto acc_type = accumulate_type(q);
    const at::Tensor row_sums = attention_row_sums(dout, out);
    // This rank's own block first: the whole of its dK/dV from its own queries.
    AttentionGrads own = attention_backward({dout, q, k, v, lse, out, row_sums}, BlockView{q_pos, q_pos}, c.mask, c.scale);
    Tracked dq(c.stats, own.dq);
    Tracked home_dk(c.stats, own.dk), home_dv(c.stats, own.dv);
    const int home_group = needs.last_hop(r) > 0 ? needs.last_hop(r) + 1 : -1;  // when our rows come home
    const int last = (r + needs.last_hop(r)) % p;
    at::Tensor cur_k = tr.select(k, r), cur_v = tr.select(v, r);
    // The accumulators computed at the previous step, leaving in this step's group.
    struct Leaving {
      at::Tensor dk, dv;
      int to = -1;
      bool home = false;
    } leaving;
    for (int s = 0; s <= p; ++s) {
      const int origin = (r - s + p) % p;
      const bool holds = s < p && cur_k.defined();
      StepGroup step(c.comm, c.stats, c.stats.bytes_sent_bwd);
      Tracked next_k(c.stats, at::Tensor()), next_v(c.stats, at::Tensor());
      if (s + 1 < p) {
        if (holds && needs.last_hop(origin) > hop(r, origin, p)) {
          step.send(cur_k, right, Tag::RingK);
          step.send(cur_v, right, Tag::RingV);
        }
        const int incoming = (r - s - 1 + 2 * p) % p;
        if (needs.last_hop(incoming) >= hop(r, incoming, p)) {
          next_k = step.recv({tr.rows(incoming), k.size(1), k.size(2)}, k.options(), left, Tag::RingK);
          next_v = step.recv({tr.rows(incoming), v.size(1), v.size(2)}, v.options(), left, Tag::RingV);
        }
      }
      if (leaving.to >= 0) {
        step.send_temporary(leaving.dk, leaving.to, leaving.home ? Tag::RingDKHome : Tag::RingDK);
        step.send_temporary(leaving.dv, leaving.to, leaving.home ? Tag::RingDVHome : Tag::RingDV);
        leaving = Leaving{};
      }
      Tracked in_dk(c.stats, at::Tensor()), in_dv(c.stats, at::Tensor());
      if (holds && s >= 2) {  // the held block's accumulators, started at its first visited rank
        in_dk = step.recv(cur_k.sizes(), cur_k.options().dtype(acc_type), left, Tag::RingDK);
        in_dv = step.recv(cur_v.sizes(), cur_v.options().dtype(acc_type), left, Tag::RingDV);
      }
      Tracked home_acc_k(c.stats, at::Tensor()), home_acc_v(c.stats, at::Tensor());
      if (s == home_group) {
        home_acc_k = step.recv({tr.rows(r), k.size(1), k.size(2)}, k.options().dtype(acc_type), last, Tag::RingDKHome);
        home_acc_v = step.recv({tr.rows(r), v.size(1), v.size(2)}, v.options().dtype(acc_type), last, Tag::RingDVHome);
      }
      step.post();
      if (!c.overlap) step.wait();
      at::Tensor dk_acc, dv_acc;
      if (holds && s > 0) {
        // This rank's contribution to the held block's dK/dV (none when it only passes it on).
        const Rows seeing = needs.needed(r, origin) ? rows_seeing(setup, origin) : Rows{0, 0};
        if (seeing.rows > 0) {
          AttentionGrads g = attention_backward({seeing.of(dout), seeing.of(q), cur_k, cur_v,
                                                 seeing.of(lse, 1).contiguous(), seeing.of(out),
                                                 seeing.of(row_sums, 1).contiguous()},
                                                BlockView{seeing.of(q_pos), tr.pos[origin]}, c.mask, c.scale);
          seeing.of(*dq).add_(g.dq);
          dk_acc = g.dk;
          dv_acc = g.dv;
        } else {
          dk_acc = at::zeros(cur_k.sizes(), cur_k.options().dtype(acc_type));
          dv_acc = at::zeros(cur_v.sizes(), cur_v.options().dtype(acc_type));
        }
      }
      step.wait();
      if (dk_acc.defined()) {
        if (in_dk.get().defined()) {
          dk_acc = in_dk->add_(dk_acc);
          dv_acc = in_dv->add_(dv_acc);
        }
        const bool onward = needs.last_hop(origin) > hop(r, origin, p);
        leaving = Leaving{dk_acc, dv_acc, onward ? right : origin, !onward};
      }
      if (home_acc_k.get().defined()) {
        home_dk->index_add_(0, rows_on(tr.idx[r], *home_dk), *home_acc_k);
        home_dv->index_add_(0, rows_on(tr.idx[r], *home_dv), *home_acc_v);
      }
      cur_k = next_k.get();
      cur_v = next_v.get();
    }
    return {*dq, *home_dk, *home_dv};
  }
};

}  // namespace

std::unique_ptr<CpStrategy> make_ring() { return std::make_unique<Ring>(); }

}  // namespace longhaul

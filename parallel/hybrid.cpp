// Hybrid (2-D): Ulysses inside groups of U = ulysses_degree ranks, an inner ring strategy (Ring or
// TokenRing) across the P/U groups. CP rank r is Ulysses index r % U of ring position r / U (the
// ProcessMesh order: ulysses varies fastest). After the all-to-all a rank holds its group's rows
// for H/U heads, and the ring runs over a sub-plan whose "ranks" are the groups.
#include <ATen/ATen.h>

#include <map>

#include "parallel/head_exchange.h"
#include "parallel/hybrid_layout.h"
#include "parallel/strategy.h"
#include "runtime/errors.h"

namespace longhaul {
namespace {

at::Tensor replicate(const at::Tensor& x, int64_t rep) { return rep == 1 ? x : x.repeat_interleave(rep, 1); }

class Hybrid : public CpStrategy {
 public:
  Hybrid(int ulysses_degree, Strategy inner) : u_(ulysses_degree), inner_(make_inner(inner)) {}

  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    Layout2D m = layout(c);
    const int64_t rep = kv_replication(q.size(1), k.size(1), u_, "hybrid");
    int64_t& bytes = c.stats.bytes_sent_fwd;
    Tracked qh(c.stats, heads_to_rows(*m.ulysses, q, m.member_rows, bytes));
    Tracked kh(c.stats, heads_to_rows(*m.ulysses, replicate(k, rep), m.member_rows, bytes));
    Tracked vh(c.stats, heads_to_rows(*m.ulysses, replicate(v, rep), m.member_rows, bytes));
    CpCall inner{*m.ring, m.group_plan, c.mask, c.scale, c.overlap, c.stats};
    AttentionOutput o = inner_->forward(*qh, *kh, *vh, inner);
    at::Tensor out = rows_to_heads(*m.ulysses, o.out.to(q.scalar_type()), m.member_rows, bytes);
    at::Tensor lse =
        rows_to_heads(*m.ulysses, o.lse.transpose(0, 1).contiguous(), m.member_rows, bytes).transpose(0, 1).contiguous();
    return {out.to(accumulate_type(q)), lse};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    Layout2D m = layout(c);
    const int64_t rep = kv_replication(q.size(1), k.size(1), u_, "hybrid");
    int64_t& bytes = c.stats.bytes_sent_bwd;
    Tracked qh(c.stats, heads_to_rows(*m.ulysses, q, m.member_rows, bytes));
    Tracked kh(c.stats, heads_to_rows(*m.ulysses, replicate(k, rep), m.member_rows, bytes));
    Tracked vh(c.stats, heads_to_rows(*m.ulysses, replicate(v, rep), m.member_rows, bytes));
    Tracked doh(c.stats, heads_to_rows(*m.ulysses, dout, m.member_rows, bytes));
    Tracked oh(c.stats, heads_to_rows(*m.ulysses, out.to(q.scalar_type()), m.member_rows, bytes));
    at::Tensor lse_h =
        heads_to_rows(*m.ulysses, lse.transpose(0, 1).contiguous(), m.member_rows, bytes).transpose(0, 1).contiguous();
    CpCall inner{*m.ring, m.group_plan, c.mask, c.scale, c.overlap, c.stats};
    AttentionGrads g = inner_->backward(*doh, *qh, *kh, *vh, *oh, lse_h, inner);
    at::Tensor dq = rows_to_heads(*m.ulysses, g.dq, m.member_rows, bytes);
    at::Tensor dk = rows_to_heads(*m.ulysses, g.dk, m.member_rows, bytes);
    at::Tensor dv = rows_to_heads(*m.ulysses, g.dv, m.member_rows, bytes);
    if (rep > 1) {
      dk = dk.view({dk.size(0), k.size(1), rep, dk.size(2)}).sum(2);
      dv = dv.view({dv.size(0), v.size(1), rep, dv.size(2)}).sum(2);
    }
    return {dq, dk, dv};
  }

 private:
  struct Layout2D {
    CommPtr ulysses, ring;
    std::vector<int64_t> member_rows;  // rows of each member of this rank's Ulysses group
    ShardPlan group_plan;              // the ring over groups: rows of group j = its members' rows
  };

  static std::unique_ptr<CpStrategy> make_inner(Strategy s) {
    if (s == Strategy::Ring) return make_ring();
    if (s == Strategy::TokenRing) return make_token_ring();
    throw InvalidArgument(std::string("strategy hybrid: the inner strategy must be ring or tokenring, got ") +
                          to_string(s));
  }

  Layout2D layout(const CpCall& c) {
    const int p = c.comm.size(), r = c.comm.rank();
    LH_CHECK(u_ >= 1 && p % u_ == 0, "strategy hybrid: ulysses_degree ", u_, " does not divide the CP group size ", p);
    auto& groups = groups_[&c.comm];
    if (!groups.first) {  // collective, once per CP group
      groups.first = c.comm.split(r / u_, r % u_);
      groups.second = c.comm.split(r % u_, r / u_);
    }
    return {groups.first, groups.second, hybrid_member_rows(c.plan, u_, r), hybrid_group_plan(c.plan, u_, r)};
  }

  int u_;
  std::unique_ptr<CpStrategy> inner_;
  std::map<const Communicator*, std::pair<CommPtr, CommPtr>> groups_;  // (ulysses, ring) per CP group
};

}  // namespace

std::unique_ptr<CpStrategy> make_hybrid(int ulysses_degree, Strategy inner) {
  return std::make_unique<Hybrid>(ulysses_degree, inner);
}

}  // namespace longhaul

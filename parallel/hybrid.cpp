// Hybrid (2-D): Ulysses inside groups of U = ulysses_degree ranks, an inner ring strategy (Ring or
// TokenRing) across the P/U groups. CP rank r is Ulysses index r % U of ring position r / U (the
// ProcessMesh order: ulysses varies fastest). After the all-to-all a rank holds its group's rows
// for H/U heads, and the ring runs over a sub-plan whose "ranks" are the groups.
#include <ATen/ATen.h>

#include <map>

#include "parallel/head_exchange.h"
#include "parallel/hybrid_layout.h"
#include "parallel/strategy.h"
#include "core/errors.h"

namespace longhaul {
namespace {

class Hybrid : public CpStrategy {
 public:
  Hybrid(int ulysses_degree, Strategy inner) : u_(ulysses_degree), inner_(make_inner(inner)) {}

  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CpCall& c) override {
    Layout2D m = layout(c);
    const int64_t rep = kv_replication(q.size(1), k.size(1), u_, "hybrid");
    int64_t& bytes = c.stats.bytes_sent_fwd;
    auto to_rows = [&](const at::Tensor& x) { return Tracked(c.stats, heads_to_rows(*m.ulysses, x, m.member_rows, bytes)); };
    Tracked qh = to_rows(q), kh = to_rows(replicate_kv(k, rep)), vh = to_rows(replicate_kv(v, rep));
    AttentionOutput o = inner_->forward(*qh, *kh, *vh, inner_call(m, c));
    at::Tensor out = rows_to_heads(*m.ulysses, o.out.to(q.scalar_type()), m.member_rows, bytes);
    return {out.to(accumulate_type(q)), stats_to_heads(*m.ulysses, o.lse, m.member_rows, bytes)};
  }

  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const CpCall& c) override {
    Layout2D m = layout(c);
    const int64_t rep = kv_replication(q.size(1), k.size(1), u_, "hybrid");
    int64_t& bytes = c.stats.bytes_sent_bwd;
    auto to_rows = [&](const at::Tensor& x) { return Tracked(c.stats, heads_to_rows(*m.ulysses, x, m.member_rows, bytes)); };
    Tracked qh = to_rows(q), kh = to_rows(replicate_kv(k, rep)), vh = to_rows(replicate_kv(v, rep));
    Tracked doh = to_rows(dout), oh = to_rows(out.to(q.scalar_type()));
    at::Tensor lse_h = stats_to_rows(*m.ulysses, lse, m.member_rows, bytes);
    AttentionGrads g = inner_->backward(*doh, *qh, *kh, *vh, *oh, lse_h, inner_call(m, c));
    auto to_heads = [&](const at::Tensor& x) { return rows_to_heads(*m.ulysses, x, m.member_rows, bytes); };
    return {to_heads(g.dq), sum_kv_replicas(to_heads(g.dk), k.size(1), rep),
            sum_kv_replicas(to_heads(g.dv), v.size(1), rep)};
  }

 private:
  struct Layout2D {
    CommPtr ulysses, ring;
    std::vector<int64_t> member_rows;  // rows of each member of this rank's Ulysses group
    ShardPlan group_plan;              // the ring over groups: rows of group j = its members' rows
  };

  static CpCall inner_call(const Layout2D& m, const CpCall& c) {
    return CpCall{*m.ring, m.group_plan, c.mask, c.scale, c.overlap, c.stats};
  }

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

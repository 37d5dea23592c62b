#include "parallel/bucket_planner.h"

#include <algorithm>

#include "core/errors.h"

namespace longhaul {

std::vector<BucketDegree> plan_bucket_degrees(const BucketProblem& bp, const Network& net) {
  LH_CHECK(bp.world >= 1 && bp.tokens_per_step > 0 && bp.min_log2 >= 0 && bp.min_log2 <= bp.max_log2 &&
               bp.max_log2 < 40 && bp.H > 0 && bp.H_kv > 0 && bp.D > 0 && bp.layers >= 1,
           "plan_bucket_degrees: need world >= 1, tokens_per_step > 0, 0 <= min_log2 <= max_log2 < 40, H, H_kv, "
           "D, layers > 0");
  std::vector<int> degrees;
  for (int c = 1; c <= bp.world; ++c)
    if (bp.world % c == 0) degrees.push_back(c);
  std::vector<BucketDegree> out;
  for (int k = bp.min_log2; k <= bp.max_log2; ++k) {
    BucketDegree b;
    b.log2_len = k;
    b.length = int64_t(1) << k;
    b.sequences = std::max<int64_t>(1, bp.tokens_per_step / b.length);
    for (int c : degrees) {
      DegreeOption o;
      o.degree = c;
      const int64_t groups = bp.world / c;
      o.sequences_per_group = (b.sequences + groups - 1) / groups;
      Problem pr;
      pr.T = b.length, pr.H = bp.H, pr.H_kv = bp.H_kv, pr.D = bp.D, pr.P = c, pr.elem_bytes = bp.elem_bytes;
      pr.mask = "causal";
      pr.kernel_gflops = bp.kernel_gflops;
      pr.memory_limit_bytes = bp.memory_limit_bytes;
      const Strategy st = c == 1 ? Strategy::Ring : bp.strategy;
      const Layout lay = c == 1 ? Layout::Contiguous : bp.layout;
      pr.only_strategy = st;
      pr.only_layout = lay;
      bool found = false;
      for (const Prediction& p : plan_strategies(pr, net)) {
        if (p.strategy != st || (st != Strategy::Hybrid && p.layout != lay)) continue;
        found = true;
        const double seqs = double(o.sequences_per_group) * bp.layers;
        o.compute_s = p.compute_s * seqs;
        o.comm_s = p.comm_s * seqs;
        o.attention_s = o.compute_s + o.comm_s;
        const double busiest_tokens = double(o.sequences_per_group) * double(b.length) / c;
        o.dense_s = bp.dense_gflops > 0 ? busiest_tokens * bp.dense_flops_per_token / (bp.dense_gflops * 1e9) : 0.0;
        o.step_s = o.attention_s + o.dense_s;
        o.memory_bytes = p.memory_bytes;
        o.feasible = p.feasible;
        o.note = p.note;
        break;
      }
      if (!found) o.feasible = false, o.note = "no prediction for this strategy and layout";
      b.options.push_back(o);
    }
    const DegreeOption* best = nullptr;
    for (const DegreeOption& o : b.options)
      if (o.feasible && (best == nullptr || o.step_s < best->step_s * 0.99)) best = &o;
    if (best == nullptr) {
      // Memory per rank falls about like 1/c: the degree this bucket would need.
      const DegreeOption& widest = b.options.back();
      const double needed = bp.memory_limit_bytes > 0
                                ? double(widest.degree) * double(widest.memory_bytes) / bp.memory_limit_bytes
                                : 0.0;
      throw InvalidArgument(detail::str_cat(
          "bucket 2^", k, " (", b.length, " tokens): no CP degree of the ", bp.world, " ranks fits the memory limit of ",
          bp.memory_limit_bytes / double(1 << 30), " GiB per rank; the widest, ", widest.degree, ", needs ",
          double(widest.memory_bytes) / double(1 << 30), " GiB per rank (about ", int64_t(needed + 0.999),
          " ranks would be needed; ", widest.note, ")"));
    }
    b.degree = best->degree;
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace longhaul

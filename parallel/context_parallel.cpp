#include "parallel/context_parallel.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <vector>

#include "parallel/strategy.h"
#include "core/enum_names.h"
#include "core/aten_boundary.h"
#include "core/errors.h"
#include "runtime/comm/agreement.h"

namespace longhaul {

const char* to_string(Strategy s) {
  switch (s) {
    case Strategy::RingSelfAttention: return "rsa";
    case Strategy::Ring: return "ring";
    case Strategy::AllGatherKV: return "allgather";
    case Strategy::TokenRing: return "tokenring";
    case Strategy::Ulysses: return "ulysses";
    case Strategy::Hybrid: return "hybrid";
  }
  return "?";
}

Strategy strategy_from_string(const std::string& name) {
  return enum_from_string(name,
                          {Strategy::RingSelfAttention, Strategy::Ring, Strategy::AllGatherKV, Strategy::TokenRing,
                           Strategy::Ulysses, Strategy::Hybrid},
                          "strategy");
}

namespace {
std::unique_ptr<CpStrategy> make_strategy(const Options& o) {
  switch (o.strategy) {
    case Strategy::RingSelfAttention: return make_ring_self_attention();
    case Strategy::Ring: return make_ring();
    case Strategy::AllGatherKV: return make_allgather_kv();
    case Strategy::TokenRing: return make_token_ring();
    case Strategy::Ulysses: return make_ulysses();
    case Strategy::Hybrid: return make_hybrid(o.ulysses_degree, o.inner);
  }
  throw InvalidArgument("unknown strategy");
}

}  // namespace

ContextParallel::ContextParallel(CommPtr cp_group, Options options)
    : comm_(std::move(cp_group)), options_(options), strategy_(make_strategy(options)) {
  LH_CHECK(comm_ != nullptr, "ContextParallel: the CP group communicator is null");
  LH_CHECK(options_.ulysses_degree >= 1, "ContextParallel: ulysses_degree must be >= 1, got ", options_.ulysses_degree);
  LH_CHECK(std::isfinite(options_.scale) && options_.scale >= 0, "ContextParallel: the softmax scale must be a "
           "finite number > 0 (or 0 for 1/sqrt(D)), got ", options_.scale);
}

ContextParallel::~ContextParallel() = default;

namespace {
// "offset 2 is 20 in the mask, 10 in the plan (3 vs 3 documents)"
std::string first_difference(const std::vector<int64_t>& mask, const std::vector<int64_t>& plan) {
  size_t i = 0;
  while (i < mask.size() && i < plan.size() && mask[i] == plan[i]) ++i;
  const auto at = [i](const std::vector<int64_t>& v) { return i < v.size() ? std::to_string(v[i]) : "missing"; };
  return detail::str_cat("offset ", i, " is ", at(mask), " in the mask, ", at(plan), " in the plan (",
                         mask.size() - 1, " vs ", plan.size() - 1, " documents)");
}
}  // namespace

void ContextParallel::check_call(const char* fn, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const ShardPlan& plan, const Mask& mask) {
  LH_CHECK(plan.P() == comm_->size() && plan.rank() == comm_->rank(), fn, ": the ShardPlan is for rank ",
           plan.rank(), " of ", plan.P(), " but the CP group has this rank as ", comm_->rank(), " of ", comm_->size());
  LH_CHECK(plan.layout() == options_.layout, fn, ": the ShardPlan uses layout ", to_string(plan.layout()),
           " but this ContextParallel was built for ", to_string(options_.layout));
  LH_CHECK(q.defined() && q.dim() == 3 && q.size(0) == plan.local_rows(), fn, ": q must be [", plan.local_rows(),
           ", H, D] (this rank's rows of the plan), got ", q.defined() ? q.sizes() : at::IntArrayRef{});
  LH_CHECK(k.defined() && k.dim() == 3 && k.size(0) == plan.local_rows() && v.defined() && v.sizes() == k.sizes(),
           fn, ": k and v must both be [", plan.local_rows(), ", H_kv, D], got ", k.sizes(), " and ", v.sizes());
  LH_CHECK(q.size(1) > 0 && q.size(2) > 0 && k.size(1) > 0 && q.size(1) % k.size(1) == 0 && k.size(2) == q.size(2),
           fn, ": q ", q.sizes(), " and k ", k.sizes(), " need H >= 1 query heads, H_kv >= 1 dividing them and one "
           "head dim D >= 1");
  LH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), fn, ": q, k and v must have one "
           "dtype, got ", q.scalar_type(), ", ", k.scalar_type(), " and ", v.scalar_type());
  LH_CHECK(mask.length() < 0 || mask.length() == plan.T(), fn, ": the mask is defined on [0, ", mask.length(),
           ") but the ShardPlan's sequence has T = ", plan.T(), " tokens");
  if (mask.has_documents() && plan.cu_seqlens().size() > 2 && mask.cu_seqlens() != plan.cu_seqlens())
    throw InvalidArgument(detail::str_cat(fn, ": the mask's documents differ from the ShardPlan's: ",
                                          first_difference(mask.cu_seqlens(), plan.cu_seqlens()),
                                          "; build the mask on the plan's offsets (plan.document_mask() in C++, a "
                                          "longhaul.Mask on plan.cu_seqlens in Python)"));
}

// Every forward and every explicit backward, on every rank (autograd's backward runs a call whose
// forward was agreed, and skips it): this rank's checks, then one small all-reduce, and a named
// error on every rank when they differ (check_valid_and_agreed: a rank with invalid arguments fails
// its peers at once too). So a mismatch at the hundredth call is the same named error as at the
// first, never a hang in the strategy's collectives.
void ContextParallel::check_everywhere(const char* fn, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       const ShardPlan& plan, const Mask& mask, bool check_group,
                                       const std::function<void()>& more) {
  const auto checks = [&] {
    check_call(fn, q, k, v, plan, mask);
    if (more) more();
  };
  if (!check_group) return checks();
  // Names travel as hashes; the error shows each rank its own (a mask or documents by their
  // fingerprint, described only if they differ).
  const auto fields = [&](bool valid) -> std::vector<AgreedField> {
    if (!valid) {
      std::vector<AgreedField> placeholders;
      for (const char* name : {"T", "H", "H_kv", "D", "dtype", "k and v dtype", "scale", "strategy", "ulysses_degree",
                               "inner strategy", "layout", "mask", "documents"})
        placeholders.emplace_back(name, -1);
      return placeholders;
    }
    return {{"T", plan.T()},
            {"H", q.size(1)},
            {"H_kv", k.size(1)},
            {"D", q.size(2)},
            AgreedField::of_text("dtype", c10::toString(q.scalar_type())),
            AgreedField::of_text("k and v dtype", c10::toString(k.scalar_type())),
            AgreedField::number("scale", scale_for(q)),
            AgreedField::of_text("strategy", to_string(options_.strategy)),
            {"ulysses_degree", options_.ulysses_degree},
            AgreedField::of_text("inner strategy", to_string(options_.inner)),
            AgreedField::of_text("layout", to_string(plan.layout())),
            AgreedField::described("mask", mask.fingerprint(), [&] { return mask.describe(); }),
            AgreedField::described("documents", plan.fingerprint(), [&] { return plan.describe(); })};
  };
  check_valid_and_agreed(*comm_, q.defined() ? q.device() : at::Device(at::kCPU), checks, fields, "ContextParallel",
                         "every rank of the CP group must call with valid arguments and the same T, heads, head "
                         "dim, dtype, scale, strategy, layout, mask and rows");
}

double ContextParallel::scale_for(const at::Tensor& q) const {
  return options_.scale != 0 ? options_.scale : 1.0 / std::sqrt(static_cast<double>(q.size(2)));
}

AttentionOutput ContextParallel::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const ShardPlan& plan, const Mask& mask) {
  check_everywhere("ContextParallel::forward", q, k, v, plan, mask, /*check_group=*/true);
  CpCall call{*comm_, plan, mask, scale_for(q), options_.overlap, stats_};
  return aten_boundary("ContextParallel::forward", [&] {
    AttentionOutput r = strategy_->forward(q.contiguous(), k.contiguous(), v.contiguous(), call);
    r.out = r.out.to(q.scalar_type());
    return r;
  });
}

AttentionGrads ContextParallel::backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                         const ShardPlan& plan, const Mask& mask) {
  return run_backward(dout, q, k, v, out, lse, plan, mask, /*check_group=*/true);
}

AttentionGrads ContextParallel::backward_of_agreed_forward(const at::Tensor& dout, const at::Tensor& q,
                                                           const at::Tensor& k, const at::Tensor& v,
                                                           const at::Tensor& out, const at::Tensor& lse,
                                                           const ShardPlan& plan, const Mask& mask) {
  return run_backward(dout, q, k, v, out, lse, plan, mask, /*check_group=*/false);
}

AttentionGrads ContextParallel::run_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                             const ShardPlan& plan, const Mask& mask, bool check_group) {
  check_everywhere("ContextParallel::backward", q, k, v, plan, mask, check_group, [&] {
    LH_CHECK(dout.defined() && out.defined() && dout.sizes() == q.sizes() && out.sizes() == q.sizes(),
             "ContextParallel::backward: dout ", dout.defined() ? dout.sizes() : at::IntArrayRef{}, " and out ",
             out.defined() ? out.sizes() : at::IntArrayRef{}, " must have q's shape ", q.sizes());
  });
  CpCall call{*comm_, plan, mask, scale_for(q), options_.overlap, stats_};
  return aten_boundary("ContextParallel::backward", [&] {
    AttentionGrads g = strategy_->backward(dout.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(),
                                           out.contiguous(), lse.contiguous(), call);
    return AttentionGrads{g.dq.to(q.scalar_type()), g.dk.to(k.scalar_type()), g.dv.to(v.scalar_type())};
  });
}

}  // namespace longhaul

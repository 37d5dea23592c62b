#include "parallel/context_parallel.h"

#include <ATen/ATen.h>

#include <cmath>

#include "parallel/strategy.h"
#include "core/enum_names.h"
#include "core/aten_boundary.h"
#include "core/errors.h"

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
}

ContextParallel::~ContextParallel() = default;

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
  LH_CHECK(mask.length() < 0 || mask.length() == plan.T(), fn, ": the mask is defined on [0, ", mask.length(),
           ") but the ShardPlan's sequence has T = ", plan.T(), " tokens");
  if (mask.has_documents() && plan.cu_seqlens().size() > 2)
    LH_CHECK(mask.cu_seqlens() == plan.cu_seqlens(), fn, ": the mask's documents differ from the ShardPlan's (",
             mask.cu_seqlens().size() - 1, " vs ", plan.cu_seqlens().size() - 1,
             " documents); build the mask with plan.document_mask()");
}

// Every forward and every explicit backward, on every rank (autograd's backward runs a call whose
// forward was agreed, and skips it): a fingerprint of the call's fields goes into one small all-reduce
// (the max of [f, -f] gives the group's largest and smallest fingerprint); when they differ, every
// rank has seen it and all gather the fields to name the first rank and field that differ. So a
// mismatch at the hundredth call is the same named error as at the first, never a hang in the
// strategy's collectives.
void ContextParallel::check_agreement(const at::Tensor& q, const at::Tensor& k, const ShardPlan& plan,
                                      const Mask& mask) {
  const std::vector<std::pair<const char*, int64_t>> fields = {
      {"T", plan.T()},
      {"H", q.size(1)},
      {"H_kv", k.size(1)},
      {"D", q.size(2)},
      {"dtype", static_cast<int64_t>(q.scalar_type())},
      {"strategy", static_cast<int64_t>(options_.strategy)},
      {"ulysses_degree", options_.ulysses_degree},
      {"inner strategy", static_cast<int64_t>(options_.inner)},
      {"layout", static_cast<int64_t>(plan.layout())},
      {"mask", static_cast<int64_t>(mask.fingerprint())},
      {"documents", static_cast<int64_t>(plan.fingerprint())},
  };
  uint64_t signature = 0;
  for (const auto& [name, value] : fields) signature = signature * 1000003u ^ static_cast<uint64_t>(value);
  const int64_t f = static_cast<int64_t>(signature >> 2);  // 62 bits: -f never overflows
  // The check's few numbers travel where the communicator moves tensors: the CPU, or q's device
  // for one that moves CUDA tensors only (a torch NCCL group).
  const at::Device dev = comm_->moves(at::Device(at::kCPU)) ? at::Device(at::kCPU) : q.device();
  at::Tensor extremes = at::tensor({f, -f}, at::kLong).to(dev);
  comm_->all_reduce(extremes, ReduceOp::Max)->wait();
  const at::Tensor ext = extremes.cpu();
  if (ext[0].item<int64_t>() == -ext[1].item<int64_t>()) return;
  const int64_t n = static_cast<int64_t>(fields.size());
  at::Tensor mine = at::empty({1, n}, at::kLong);
  for (int64_t i = 0; i < n; ++i) mine[0][i] = fields[i].second;
  mine = mine.to(dev);
  at::Tensor all = at::empty({comm_->size(), n}, mine.options());
  comm_->all_gather(all, mine)->wait();
  all = all.cpu();
  auto a = all.accessor<int64_t, 2>();
  for (int r = 1; r < comm_->size(); ++r)
    for (int64_t i = 0; i < n; ++i)
      if (a[r][i] != a[0][i])
        throw InvalidArgument(detail::str_cat("ContextParallel: rank ", r, " disagrees with rank 0 on ", fields[i].first,
                                              " (", a[r][i], " vs ", a[0][i], "); every rank of the CP group must "
                                              "call with the same T, heads, head dim, dtype, strategy, layout and mask"));
  throw Error("ContextParallel: the ranks' call fingerprints differ but their fields agree (internal error)");
}

AttentionOutput ContextParallel::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const ShardPlan& plan, const Mask& mask) {
  check_call("ContextParallel::forward", q, k, v, plan, mask);
  check_agreement(q, k, plan, mask);
  const double scale = options_.scale > 0 ? options_.scale : 1.0 / std::sqrt(static_cast<double>(q.size(2)));
  CpCall call{*comm_, plan, mask, scale, options_.overlap, stats_};
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

AttentionGrads ContextParallel::run_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                             const ShardPlan& plan, const Mask& mask, bool check_group) {
  check_call("ContextParallel::backward", q, k, v, plan, mask);
  if (check_group) check_agreement(q, k, plan, mask);
  LH_CHECK(dout.sizes() == q.sizes() && out.sizes() == q.sizes(), "ContextParallel::backward: dout ", dout.sizes(),
           " and out ", out.sizes(), " must have q's shape ", q.sizes());
  const double scale = options_.scale > 0 ? options_.scale : 1.0 / std::sqrt(static_cast<double>(q.size(2)));
  CpCall call{*comm_, plan, mask, scale, options_.overlap, stats_};
  return aten_boundary("ContextParallel::backward", [&] {
    AttentionGrads g = strategy_->backward(dout.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(),
                                           out.contiguous(), lse.contiguous(), call);
    return AttentionGrads{g.dq.to(q.scalar_type()), g.dk.to(k.scalar_type()), g.dv.to(v.scalar_type())};
  });
}

}  // namespace longhaul

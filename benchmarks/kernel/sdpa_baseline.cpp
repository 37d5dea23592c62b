#include "benchmarks/kernel/sdpa_baseline.h"

#include <ATen/ATen.h>

#include <cmath>
#include <optional>

#include "benchmarks/kernel/mask_cases.h"

namespace longhaul::bench {
namespace {
at::Tensor as_bhtd(const at::Tensor& x) { return x.permute({1, 0, 2}).unsqueeze(0); }
}  // namespace

SdpaTimes time_sdpa(const SdpaInputs& in, bool backward, const TimingPlan& plan) {
  // Leaves sharing the inputs' storage, so gradients flow to them.
  at::Tensor q = in.q.detach().requires_grad_(true), k = in.k.detach().requires_grad_(true),
             v = in.v.detach().requires_grad_(true);
  const bool causal = in.mask_name == "causal";
  std::optional<at::Tensor> dense;
  if (!sdpa_expresses(in.mask_name))
    dense = in.mask->dense(at::arange(in.q.size(0), at::kLong), at::arange(in.q.size(0), at::kLong)).to(in.q.device());
  const bool gqa = in.k.size(1) != in.q.size(1);
  const at::Tensor grad = as_bhtd(in.dout);

  const PhaseSamples samples = time_phases(plan, [&] {
    Stopwatch watch(in.q.device());
    at::Tensor out = at::scaled_dot_product_attention(as_bhtd(q), as_bhtd(k), as_bhtd(v), dense, 0.0, causal,
                                                      std::nullopt, gqa);
    const double fwd = watch.lap();
    double bwd = 0;
    if (backward) {
      out.backward(grad);
      bwd = watch.lap();
      for (at::Tensor* leaf : {&q, &k, &v}) leaf->mutable_grad() = at::Tensor();
    }
    return std::vector<double>{fwd, bwd};
  });
  return {median_of_first_phases(samples, 1), backward ? median_of_first_phases(samples, 2) : NAN};
}

}  // namespace longhaul::bench

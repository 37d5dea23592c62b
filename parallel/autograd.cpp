// ContextParallel::attention as a torch autograd Function: forward runs the strategy's forward
// and keeps out/lse; backward (called by loss.backward(), a collective) runs the strategy's
// backward. The plan and mask travel to backward in a capsule (a ShardPlan copy is cheap).
#include <torch/csrc/autograd/custom_function.h>

#include "parallel/context_parallel.h"

namespace longhaul {
namespace {

struct CallState : torch::CustomClassHolder {
  CallState(ContextParallel* cp, ShardPlan plan, Mask mask) : cp(cp), plan(std::move(plan)), mask(std::move(mask)) {}
  ContextParallel* cp;
  ShardPlan plan;
  Mask mask;
};

}  // namespace

namespace detail {
class CpAttentionFunction : public torch::autograd::Function<CpAttentionFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v, ContextParallel* cp,
                                                const ShardPlan& plan, const Mask& mask) {
    AttentionOutput r = cp->forward(q, k, v, plan, mask);
    ctx->save_for_backward({q, k, v, r.out, r.lse});
    ctx->saved_data["state"] = c10::IValue::make_capsule(c10::make_intrusive<CallState>(cp, plan, mask));
    ctx->mark_non_differentiable({r.lse});
    return {r.out, r.lse};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto state = c10::static_intrusive_pointer_cast<CallState>(ctx->saved_data["state"].toCapsule());
    at::Tensor dout = grads[0].defined() ? grads[0] : at::zeros_like(saved[3]);
    AttentionGrads g = state->cp->backward_of_agreed_forward(dout, saved[0], saved[1], saved[2], saved[3], saved[4],
                                                             state->plan, state->mask);
    return {g.dq, g.dk, g.dv, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace detail

at::Tensor ContextParallel::attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const ShardPlan& plan, const Mask& mask) {
  return detail::CpAttentionFunction::apply(q, k, v, this, plan, mask)[0];
}

}  // namespace longhaul

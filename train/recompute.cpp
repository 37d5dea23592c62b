#include "train/recompute.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

namespace longhaul::train {
namespace {

struct Holder : torch::CustomClassHolder {
  explicit Holder(BlockFn fn) : fn(std::move(fn)) {}
  BlockFn fn;
};

class Checkpointed : public torch::autograd::Function<Checkpointed> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const BlockFn& fn) {
    at::Tensor out;
    {
      at::NoGradGuard no_grad;
      out = fn(x);
    }
    ctx->save_for_backward({x});
    ctx->saved_data["fn"] = c10::IValue::make_capsule(c10::make_intrusive<Holder>(fn));
    return {out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto holder = c10::static_intrusive_pointer_cast<Holder>(ctx->saved_data["fn"].toCapsule());
    at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor out;
    {
      at::AutoGradMode grad_on(true);
      out = holder->fn(x);
    }
    torch::autograd::backward({out}, {grads[0]});
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpointed(const BlockFn& fn, const at::Tensor& x) { return Checkpointed::apply(x, fn)[0]; }

}  // namespace longhaul::train

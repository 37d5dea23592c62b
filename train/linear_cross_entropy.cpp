#include "train/linear_cross_entropy.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "core/errors.h"

namespace longhaul::train {
namespace {

struct Result {
  at::Tensor loss, d_hidden, d_weight;  // the gradients only when asked for
};

// Chunk by chunk: the loss and, with `grad`, ∂loss/∂hidden and ∂loss/∂weight (summed over chunks
// in loss_dtype). ∂loss/∂logits of a row is softmax − one-hot; rows without a target drop out
// through their hidden row (zeroed for ∂weight) and their ∂hidden row (zeroed), so no pass over
// the [rows, vocab] block is spent on them. The gradient goes to the compute dtype for its two
// matmuls, as the plain head's does. Per chunk the block is written by the matmul, read and
// written by log_softmax (row by row, in cache), turned into the softmax in place, and read by
// the two gradient matmuls.
Result compute(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets, at::ScalarType loss_dtype,
               int64_t chunk_rows, int64_t ignore, bool grad) {
  const int64_t n = hidden.size(0);
  Result r;
  r.loss = at::zeros({}, hidden.options().dtype(loss_dtype));
  if (grad) {
    r.d_hidden = at::empty_like(hidden);
    r.d_weight = at::zeros(weight.sizes(), weight.options().dtype(loss_dtype));
  }
  const bool same_dtype = weight.scalar_type() == loss_dtype;  // ∂weight accumulates in place
  for (int64_t r0 = 0; r0 < n; r0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, n - r0);
    const at::Tensor h = hidden.narrow(0, r0, rows), t = targets.narrow(0, r0, rows);
    const at::Tensor valid = t.ne(ignore).unsqueeze(1);
    const at::Tensor safe = t.unsqueeze(1).masked_fill(valid.logical_not(), 0);
    at::Tensor logp = at::log_softmax(at::mm(h, weight.t()).to(loss_dtype), 1);
    r.loss.sub_(logp.gather(1, safe).masked_fill_(valid.logical_not(), 0).sum());
    if (!grad) continue;
    at::Tensor g = logp.exp_();  // the softmax, in place
    g.scatter_add_(1, safe, at::full({rows, 1}, -1.0, g.options()));
    const at::Tensor gc = g.to(weight.scalar_type());
    const at::Tensor mask = valid.to(hidden.scalar_type());
    r.d_hidden.narrow(0, r0, rows).copy_(at::mm(gc, weight).mul_(mask));
    const at::Tensor hv = h * mask;
    if (same_dtype) r.d_weight.addmm_(gc.t(), hv);
    else r.d_weight.add_(at::mm(gc.t(), hv));
  }
  return r;
}

class LinearCrossEntropy : public torch::autograd::Function<LinearCrossEntropy> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                                                const at::Tensor& weight, const at::Tensor& targets,
                                                at::ScalarType loss_dtype, int64_t chunk_rows, int64_t ignore) {
    Result r = compute(hidden, weight, targets, loss_dtype, chunk_rows, ignore, true);
    ctx->saved_data["d_hidden"] = r.d_hidden;
    ctx->saved_data["d_weight"] = r.d_weight;
    ctx->saved_data["hidden_dtype"] = static_cast<int64_t>(hidden.scalar_type());
    ctx->saved_data["weight_dtype"] = static_cast<int64_t>(weight.scalar_type());
    return {r.loss};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor& g = grads[0];  // ∂/∂loss, a 0-dim tensor
    const auto dtype = [&](const char* key) { return static_cast<at::ScalarType>(ctx->saved_data[key].toInt()); };
    at::Tensor dh = (ctx->saved_data["d_hidden"].toTensor() * g).to(dtype("hidden_dtype"));
    at::Tensor dw = (ctx->saved_data["d_weight"].toTensor() * g).to(dtype("weight_dtype"));
    return {dh, dw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor linear_cross_entropy_sum(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                    at::ScalarType loss_dtype, int64_t chunk_rows, int64_t ignore_index) {
  LH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
           "linear_cross_entropy: hidden must be [N, d] and weight [V, d], got ", hidden.sizes(), " and ",
           weight.sizes());
  LH_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0) && targets.scalar_type() == at::kLong,
           "linear_cross_entropy: targets must be int64 [N = ", hidden.size(0), "], got ", targets.scalar_type(), " ",
           targets.sizes());
  LH_CHECK(chunk_rows >= 1, "linear_cross_entropy: chunk_rows must be >= 1, got ", chunk_rows);
  LH_CHECK(loss_dtype == at::kFloat || loss_dtype == at::kDouble,
           "linear_cross_entropy: the loss dtype must be float32 or float64, got ", loss_dtype);
  const int64_t vocab = weight.size(0);
  const at::Tensor outside = targets.ne(ignore_index).logical_and(targets.lt(0).logical_or(targets.ge(vocab)));
  if (outside.any().item<bool>()) {
    const int64_t row = outside.nonzero()[0][0].item<int64_t>();
    throw InvalidArgument(detail::str_cat("linear_cross_entropy: target ", targets[row].item<int64_t>(), " of row ",
                                          row, " outside [0, vocab = ", vocab, ") (and not the ignore index ",
                                          ignore_index, ")"));
  }
  if (at::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad()))
    return LinearCrossEntropy::apply(hidden, weight, targets, loss_dtype, chunk_rows, ignore_index)[0];
  return compute(hidden, weight, targets, loss_dtype, chunk_rows, ignore_index, false).loss;
}

int64_t loss_chunk_rows(int64_t vocab, at::ScalarType loss_dtype, int64_t bytes) {
  if (bytes == 0) return 0;
  const int64_t row = std::max<int64_t>(1, vocab) * int64_t(c10::elementSize(loss_dtype));
  return std::max<int64_t>(1, bytes / row);
}

}  // namespace longhaul::train

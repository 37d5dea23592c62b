#include "train/rope.h"

#include <ATen/ATen.h>

#include "core/vector_math_warmup.h"

namespace longhaul::train {

RopeTables rope_tables(const at::Tensor& positions, int64_t head_dim, double theta, const at::TensorOptions& options) {
  warm_up_vector_math();  // float64 angles through torch's sin and cos
  const int64_t half = head_dim / 2;
  at::Tensor i = at::arange(half, at::kDouble);
  at::Tensor inv_freq = at::pow(theta, -2.0 * i / double(head_dim));                     // [D/2] float64
  at::Tensor angles = positions.to(at::kDouble).unsqueeze(1) * inv_freq.unsqueeze(0);  // [Tl, D/2] float64
  return {angles.cos().to(options).unsqueeze(1), angles.sin().to(options).unsqueeze(1)};
}

at::Tensor apply_rope(const at::Tensor& x, const RopeTables& t) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return at::cat({x1 * t.cos - x2 * t.sin, x1 * t.sin + x2 * t.cos}, -1);
}

}  // namespace longhaul::train

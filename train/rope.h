// Rotary position embeddings from each row's position inside its document (ShardPlan::
// doc_positions()). Angles are computed in float64: at positions near 10^6 a float32 product
// position · frequency has an absolute error of ~0.06 rad, visibly wrong after the sine.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

namespace longhaul::train {

struct RopeTables {
  at::Tensor cos, sin;  // [Tl, 1, D/2] in the model's dtype
};

// positions: int64 [Tl] on the CPU. The tables are made there (float64 angles), then converted to
// `options`' dtype and moved to its device (a dtype alone: the CPU).
RopeTables rope_tables(const at::Tensor& positions, int64_t head_dim, double theta, const at::TensorOptions& options);

// x [Tl, H, D] → rotated pairs (x_i, x_{i+D/2}).
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& t);

}  // namespace longhaul::train

// How far a result is from its reference, for the attention tests: max |a − b| relative to
// max(1, max |b|), in float64. Infinities must match exactly (same places, same signs) and a NaN
// in `a` fails: both read 1e30.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

namespace longhaul::testing {

inline double rel_err(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.to(at::kDouble), y = b.to(at::kDouble);
  const at::Tensor inf_x = at::isinf(x), inf_y = at::isinf(y);
  if (!at::equal(inf_x, inf_y) || !at::equal(x.masked_select(inf_x), y.masked_select(inf_y))) return 1e30;
  if (at::isnan(x).any().item<bool>()) return 1e30;
  x = x.masked_fill(inf_x, 0);
  y = y.masked_fill(inf_y, 0);
  if (x.numel() == 0) return 0;
  return (x - y).abs().max().item<double>() / std::max(1.0, y.abs().max().item<double>());
}

}  // namespace longhaul::testing

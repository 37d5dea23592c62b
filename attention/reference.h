// The float64 reference: naive, materialises the Tq×Tk scores (one head at a time, on the inputs'
// device). For tests and small checks only: a few query rows against a long sequence are small too.
#pragma once

#include "attention/attention.h"

namespace longhaul::reference {

// Dense visibility [Tq, Tk] (bool) of a block under a mask.
at::Tensor visible_matrix(const Mask& mask, const BlockView& view);

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale);
// in.row_sums defined (attention_backward resolves it).
AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask, double scale);

}  // namespace longhaul::reference

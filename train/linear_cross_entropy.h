// The output head and its loss in one, over chunks of rows: Σ_i CE(hidden_i · weightᵀ, target_i)
// without ever holding the [rows, vocab] logits whole. A pass of Tl tokens over a vocabulary of V
// holds Tl·V logits, then as much again for their gradient: at 64K tokens per rank and V = 128K
// that is 32 GiB each in float32, more than the rest of a step. Here a chunk of rows forms its
// logits, its share of the loss and, when a gradient is wanted, the gradient of those logits
// (softmax − one-hot), which it turns at once into its rows of ∂hidden and its term of ∂weight;
// only those (N·d and V·d) wait for the backward, which scales them by the incoming gradient.
// The GEMMs are the three of the plain head (logits, ∂hidden, ∂weight), all run in the forward.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace longhaul::train {

// hidden [N, d] and weight [V, d] in the compute dtype (the matmuls run in it); targets int64 [N]
// on the same device, ignore_index where a row has no target. Logits and the loss are formed in
// loss_dtype (float32 or float64; the softmax's dtype). chunk_rows >= 1 rows at a time. Returns
// the summed loss, a 0-dim tensor of loss_dtype, differentiable with respect to hidden and weight
// (once: the backward is not itself differentiable).
at::Tensor linear_cross_entropy_sum(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                    at::ScalarType loss_dtype, int64_t chunk_rows, int64_t ignore_index = -100);

// Rows per chunk so that a chunk's logits take about `bytes` (at least one row); bytes 0: 0, the
// plain head (Transformer::loss_sum).
int64_t loss_chunk_rows(int64_t vocab, at::ScalarType loss_dtype, int64_t bytes);

}  // namespace longhaul::train

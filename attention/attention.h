// Exact local attention of one block of queries against one block of keys, forward and
// backward, returning the log-sum-exp so partial results over disjoint key sets merge exactly
// (docs/attention.md). Layout [T, H, D]; K and V have H_kv heads with H % H_kv == 0 (GQA/MQA).
//
// With S = scale · Q Kᵀ (masked entries −∞):
//   lse_i = log Σ_j exp(S_ij),  O_i = Σ_j exp(S_ij − lse_i) V_j.
// A query row that sees no key has out = 0 and lse = −∞ (never NaN).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "attention/mask.h"

namespace longhaul {

// Global positions of the query rows and key rows of a block (int64 CPU tensors [Tq], [Tk]).
// A ring step, a zigzag shard or a striped shard is a BlockView of the global sequence.
struct BlockView {
  at::Tensor q_pos;
  at::Tensor k_pos;
  // Rows [q_begin, q_begin + Tq) against [k_begin, k_begin + Tk).
  static BlockView contiguous(int64_t q_begin, int64_t tq, int64_t k_begin, int64_t tk);
  // The whole sequence against itself.
  static BlockView self(int64_t t) { return contiguous(0, t, 0, t); }
};

enum class AttentionBackend { Auto, Reference, Cpu, Cuda };
const char* to_string(AttentionBackend b);

struct AttentionOutput {
  at::Tensor out;  // [Tq, H, D], the input dtype
  at::Tensor lse;  // [H, Tq], float32 (float64 for float64 inputs)
};

struct AttentionGrads {
  at::Tensor dq;  // [Tq, H, D]
  at::Tensor dk;  // [Tk, H_kv, D], summed over the query heads of each KV group
  at::Tensor dv;  // [Tk, H_kv, D]
  // float32 for float32/bfloat16/float16 inputs (accumulators; the caller rounds once), float64
  // for float64 inputs.
};

// scale 0 means 1/sqrt(D); a negative or non-finite scale is an InvalidArgument.
AttentionOutput attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const BlockView& view, const Mask& mask, double scale = 0,
                                  AttentionBackend backend = AttentionBackend::Auto);

// The same, with `out` unrounded: float32 (float64 for float64 inputs). What a strategy merges
// over key blocks, so low-precision inputs are rounded once, after the last merge.
AttentionOutput attention_forward_partial(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          const BlockView& view, const Mask& mask, double scale = 0,
                                          AttentionBackend backend = AttentionBackend::Auto);

// What a backward call takes. out and row_sums are two forms of one input: give out (the global
// output), row_sums (D_i = Σ_d dO_id · O_id, [H, Tq] float32, float64 for float64; TokenRing's
// backward, where out stays with its owner), or both — a strategy that calls backward once per
// key block computes D once, and CUDA's fused kernels, which need out, still get it.
struct BackwardInputs {
  at::Tensor dout, q, k, v;
  at::Tensor lse;       // the GLOBAL lse [H, Tq] (merged over every key block of these queries)
  at::Tensor out;       // the GLOBAL output [Tq, H, D]; may be undefined when row_sums is given
  at::Tensor row_sums;  // may be undefined when out is given
};

// The one backward entry: every backend (reference, cpu, cuda) takes the same inputs.
AttentionGrads attention_backward(const BackwardInputs& in, const BlockView& view, const Mask& mask,
                                  double scale = 0, AttentionBackend backend = AttentionBackend::Auto);

// Shorthand for attention_backward({dout, q, k, v, lse, out}, ...).
inline AttentionGrads attention_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                         const BlockView& view, const Mask& mask, double scale = 0,
                                         AttentionBackend backend = AttentionBackend::Auto) {
  return attention_backward(BackwardInputs{dout, q, k, v, lse, out, at::Tensor()}, view, mask, scale, backend);
}

// D_i = Σ_d dO_id · O_id per head: [H, Tq] float32 (float64 for float64 inputs).
at::Tensor attention_row_sums(const at::Tensor& dout, const at::Tensor& out);

// An out with the given row sums: O'_id = sign(dO_id) · D_i / Σ_d |dO_id| rounded to dout's dtype,
// plus what that rounding left of D_i on the row's largest |dO| entry (0 where dO's row is 0),
// so attention_row_sums(dout, O') = D up to about one rounding of that entry, and |O'| stays
// within (1 + head_dim / 512) times |out|'s largest entry (no overflow). Fused backward kernels
// read out only to compute D: with O' they run where only D travelled (TokenRing).
at::Tensor attention_out_for_row_sums(const at::Tensor& dout, const at::Tensor& row_sums);

// Merges partial (out_b, lse_b) over another key set into the accumulators, exactly:
//   lse = max + log1p(exp(min − max)) (−∞ when both are −∞),
//   out = exp(lse_acc − lse)·out_acc + exp(lse_b − lse)·out_b.
// out_acc [T,H,D] float32 (float64 allowed), lse_acc [H,T]; out_b any float dtype; in place.
void merge_into(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b);

}  // namespace longhaul

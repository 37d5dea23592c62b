// What the fused-kernel routes of the CUDA adapter share: varlen row bookkeeping, the head-dim
// padding the fused kernels need, the LSE fix-up and merge launches (our kernels, kernels.h), and
// the float32 gradient accumulators of one backward call.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <vector>

#include "attention/cuda/block_plan.h"

namespace longhaul::cuda::routes {

// Deterministic inputs [rows, heads, d] for the routes' one-time probes (sin of a ramp times f, in
// opt's dtype and device): no draw from the caller's RNG state.
at::Tensor probe_input(int64_t rows, int64_t heads, int64_t d, double f, const at::TensorOptions& opt);

// Zero-pads the head dim to a multiple of 8 (what the fused kernels need; exact for q·k and v).
at::Tensor pad_head_dim(const at::Tensor& x);

// Row indices of a range of pieces (q or k side) plus int32 cumulative lengths, on the device.
struct Rows {
  at::Tensor index;        // int64 [total]
  at::Tensor cu;           // int32 [pieces + 1]
  int64_t total = 0, max_len = 0;
  bool identity = false;   // the rows are exactly 0..T-1 in order: no gather needed
};
Rows piece_rows(const std::vector<Piece>& pieces, size_t begin, size_t end, bool q_side, int64_t t_all,
                const at::Device& dev);
at::Tensor gather(const at::Tensor& x, const Rows& r);

// Normalises an ATen logsumexp (any strides, [H, rows] after squeezing) to [H, rows] float32 and
// zeroes the out rows of rows that saw no key.
at::Tensor fix_lse(const at::Tensor& aten_lse, at::Tensor& out, int64_t rows);

// Merges (out_b, lse_b) into float32 accumulators out_acc [T, H, D], lse_acc [H, T] (our kernel).
void launch_merge(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b);
// The same for the given (disjoint) q rows only.
void merge_rows(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& rows, bool identity,
                const at::Tensor& out_b, const at::Tensor& lse_b);

// ATen's backward kernels treat lse = +inf as "P = 0" (flash's own empty-row value); longhaul
// writes -inf there, which would give exp(S + inf) = inf inside them.
at::Tensor lse_for_aten(const at::Tensor& lse);

// A varlen kernel's output for all pieces of a group: out [rows, H, Dp] (input dtype) and the
// fixed-up lse [H, rows] of the q rows `qr` (pieces in order).
struct GroupOutput {
  at::Tensor out, lse;
  Rows qr;
};
// Merges a group's output into the float32 accumulators, one merge per layer of the group (the
// rows of a layer are disjoint).
void merge_group(const PieceGroup& g, const GroupOutput& r, at::Tensor& out_acc, at::Tensor& lse_acc);

// Gradient accumulators (float32) of one backward call. Allocated (zeroed) on first
// accumulation, so a whole-block backward can hand over the kernel's own gradients instead.
struct GradAcc {
  at::Tensor dq, dk, dv;
  std::array<int64_t, 3> q_shape, kv_shape;
  at::TensorOptions options;
  void allocate_if_needed();
};

// Adds a varlen backward's gradients (rows qr / kr of the block, head dim padded) into acc; the
// kernel's own gradients become the answer when the group covers the whole block.
void add_group_grads(const Rows& qr, const Rows& kr, const at::Tensor& dq, const at::Tensor& dk,
                     const at::Tensor& dv, GradAcc& acc);

}  // namespace longhaul::cuda::routes

// The cuDNN routes (fp16/bf16): a whole square MHA block where ATen's SDPA would pick cuDNN goes
// in as a [1, H, T, D] view (no copy), and so does each piece of a group of one or two (a ring
// step's, MHA): forward and backward on dense cuDNN. Any other full group, or causal group of
// square pieces, runs as one ragged (varlen) cuDNN call over the pieces, GQA included.
//
// torch ships the ragged cuDNN operator but does not route its own varlen attention to it, so
// before its first use in a process we run it once on a small problem against
// FlashAttention-2 (forward, causal, GQA) and learn its logsumexp layout, then time both on a
// block of documents; if it fails, disagrees or is slower the route stays off and
// FlashAttention-2 runs those groups (LONGHAUL_CUDA_VARLEN: unset or auto as just said, cudnn
// without the timing, flash off outright).
//
// Only the forward is ragged cuDNN. torch 2.11's ragged backward (at::_cudnn_attention_backward
// with cumulative lengths) ignores its max_q / max_k arguments and takes query.size(2) instead,
// which for packed [rows, H, D] inputs is the head dim: cuDNN sizes its dQ accumulator for D rows
// per piece and writes past it on any longer piece (an illegal address, or another tensor
// overwritten). The cuDNN band route's backward graph (route_cudnn_band.h) takes the group instead
// where that route is on, FlashAttention-2's varlen backward otherwise: the forward's out and
// logsumexp are the block's, so the gradients are exact whichever kernel made them.
#pragma once

#include <string>

#include "attention/attention.h"
#include "attention/cuda/route_common.h"

namespace longhaul::cuda {

// LONGHAUL_CUDA_VARLEN: unset or `auto` (ragged cuDNN where it agrees and is faster), `cudnn`
// (where it agrees), `flash` (never). Any other value is an error that names these.
enum class VarlenMode { Timed, On, Off };
VarlenMode parse_varlen_mode(const char* value);
VarlenMode varlen_mode();
const char* varlen_mode_name(VarlenMode mode);  // "auto", "cudnn" or "flash", as the switch spells it

// Whether ragged cuDNN attention runs, and agrees with FlashAttention-2, for this dtype, padded
// head dim and head grouping on the current device (probed once per combination). `why` names
// the reason when it does not.
bool cudnn_varlen_usable(const at::Tensor& q, const at::Tensor& k, std::string* why = nullptr);

namespace routes {

// out [T, H, Dp] (input dtype) and fixed-up lse [H, T].
AttentionOutput cudnn_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                              double scale);
// Gradients narrowed to head dim d, float32. q may have fewer or more rows than k (full).
AttentionGrads cudnn_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& out, const at::Tensor& lse, bool causal, double scale, int64_t d);

// One dense cuDNN call per piece of a group dense_pieces_candidate takes (MHA), on row-range
// views of q, k and v: a piece's out [m, H, Dp] and fixed-up lse [H, m]; the group's gradients
// added into acc. A piece shape cuDNN refuses runs on FlashAttention-2 from then on (said once
// per shape).
AttentionOutput cudnn_forward_piece(const PieceGroup& g, const Piece& p, const at::Tensor& q, const at::Tensor& k,
                                    const at::Tensor& v, double scale);
void cudnn_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                          const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                          GradAcc& acc);

// One ragged cuDNN call over the pieces of a full or square-causal group (FlashAttention-2's
// when its element offsets would pass int32, where ATen's offsets stop).
GroupOutput cudnn_varlen_forward_pieces(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, double scale);
}  // namespace routes
}  // namespace longhaul::cuda

// The ATen adapter of the CUDA backend: plans a block into varlen pieces (block_plan.h), picks a
// route, runs it, and merges pieces that share query rows exactly. One file per route:
// route_cudnn (whole square blocks), route_flash (FlashAttention-2 varlen), route_efficient
// (memory-efficient, float32), fallback (the exact chunked math path); route_common holds what
// they share (row bookkeeping, our LSE fix-up and merge kernels, gradient accumulators).
//
// Routing (inputs already validated by attention.cpp):
//   fp16/bf16, whole square full/causal
//     block, MHA, SDPA would pick cuDNN -> at::_scaled_dot_product_cudnn_attention(_backward)
//   fp16/bf16, D <= 256, sm80+        -> at::_flash_attention_forward/_backward, varlen over the
//                                        pieces of each window group (GQA by head grouping)
//   float32, D <= 256, causal/full    -> at::_efficient_attention_forward/_backward per piece
//     pieces (no window offsets)         (KV heads expanded, mask type none / bottom-right causal)
//   everything else                   -> fallback (float64, float32 windows, D > 256, striped or
//                                        otherwise fragmented blocks, backward from row sums)
// Determinism: gradients of pieces that share rows are added with index_add_ (atomics on CUDA),
// so the fused backward is not bitwise reproducible run to run; the fallback is.
#include "attention/cuda/cuda_attention.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

#include "attention/cuda/block_plan.h"
#include "attention/cuda/fallback.h"
#include "attention/cuda/route_common.h"
#include "attention/cuda/route_cudnn.h"
#include "attention/cuda/route_efficient.h"
#include "attention/cuda/route_flash.h"
#include "core/errors.h"

namespace longhaul::cuda {
namespace {

using namespace routes;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kMaxFusedHeadDim = 256;

enum class Fused { Flash, Efficient, None };

Fused pick_fused(const at::Tensor& q, const BlockPlan& plan) {
  if (plan.fragmented || q.size(2) > kMaxFusedHeadDim) return Fused::None;
  const auto t = q.scalar_type();
  if ((t == at::kHalf || t == at::kBFloat16) && at::cuda::getCurrentDeviceProperties()->major >= 8) return Fused::Flash;
  if (t == at::kFloat) {
    for (const auto& g : plan.groups)
      if (g.left != -1 || (g.right != -1 && g.right != 0)) return Fused::None;
    return Fused::Efficient;
  }
  return Fused::None;
}

BlockPlan make_plan(const BlockView& view, const Mask& mask) {
  const at::Tensor qp = view.q_pos.to(at::kLong).contiguous(), kp = view.k_pos.to(at::kLong).contiguous();
  return plan_block(mask.spec(), qp.data_ptr<int64_t>(), qp.numel(), kp.data_ptr<int64_t>(), kp.numel());
}

// The one piece of a plan that covers every q row and every key, if that is the whole plan (a
// self block, a ring step on whole blocks): its kernel output is the answer, with no
// accumulator, merge or scatter around it.
const Piece* whole_block_piece(const BlockPlan& plan, int64_t tq, int64_t tk) {
  if (plan.groups.size() != 1 || plan.groups[0].pieces.size() != 1) return nullptr;
  const Piece& p = plan.groups[0].pieces[0];
  return p.q_row == 0 && p.m == tq && p.k_row == 0 && p.n == tk ? &p : nullptr;
}

bool group_is_full_or_causal(const PieceGroup& g) { return g.left == -1 && (g.right == -1 || g.right == 0); }

// The cuDNN route, forward and backward alike: a whole block with one full or causal piece,
// fp16/bf16 (the flash-capable dtypes), where ATen's SDPA would pick cuDNN.
bool cudnn_route(const BlockPlan& plan, Fused fused, const at::Tensor& q, const at::Tensor& k, double scale) {
  return fused == Fused::Flash && whole_block_piece(plan, q.size(0), k.size(0)) &&
         group_is_full_or_causal(plan.groups[0]) && prefers_cudnn(q, k, plan.groups[0].right == 0, scale);
}

}  // namespace

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale) {
  const c10::cuda::CUDAGuard guard(q.device());
  const BlockPlan plan = make_plan(view, mask);
  const Fused fused = pick_fused(q, plan);
  // Unrounded float32 (float64) out: attention_forward rounds it once, merges take it as is.
  if (fused == Fused::None) return fallback::forward(q, k, v, view, mask, scale);
  const int64_t tq = q.size(0), h = q.size(1), d = q.size(2);
  const at::Tensor qp = pad_head_dim(q), kp = pad_head_dim(k), vp = pad_head_dim(v);
  if (const Piece* whole = whole_block_piece(plan, tq, k.size(0))) {
    const PieceGroup& g = plan.groups[0];
    AttentionOutput r;
    if (cudnn_route(plan, fused, qp, kp, scale)) {
      r = cudnn_forward(qp, kp, vp, g.right == 0, scale);
    } else if (fused == Fused::Flash) {
      GroupOutput o = flash_forward_pieces(g, qp, kp, vp, scale);
      r = {o.out, o.lse};
    } else {
      r = efficient_forward_piece(g, *whole, qp, kp, vp, scale);
    }
    r.out = r.out.narrow(2, 0, d);
    return r;
  }
  at::Tensor out_acc = at::zeros({tq, h, d}, q.options().dtype(at::kFloat));
  at::Tensor lse_acc = at::full({h, tq}, -kInf, q.options().dtype(at::kFloat));
  for (const PieceGroup& g : plan.groups) {
    if (fused == Fused::Flash)
      flash_forward_group(g, qp, kp, vp, scale, out_acc, lse_acc);
    else
      efficient_forward_group(g, qp, kp, vp, scale, out_acc, lse_acc);
  }
  return {out_acc, lse_acc};
}

AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask, double scale) {
  const at::Tensor &dout = in.dout, &q = in.q, &k = in.k, &v = in.v, &out = in.out, &row_sums = in.row_sums,
                   &lse = in.lse;
  const c10::cuda::CUDAGuard guard(q.device());
  LH_CHECK(lse.device() == q.device(), "cuda attention backward: lse is on ", lse.device(), ", expected ",
           q.device(), " like q");
  const BlockPlan plan = make_plan(view, mask);
  // ATen's fused backward kernels take out, not row sums: without out (TokenRing) the exact math
  // path runs instead.
  const Fused fused = out.defined() ? pick_fused(q, plan) : Fused::None;
  if (fused == Fused::None) return fallback::backward(dout, q, k, v, row_sums, lse, view, mask, scale);
  const int64_t tq = q.size(0), h = q.size(1), d = q.size(2), tk = k.size(0), hkv = k.size(1);
  const auto f32 = q.options().dtype(at::kFloat);
  GradAcc acc{{}, {}, {}, {tq, h, d}, {tk, hkv, d}, f32};
  const at::Tensor dp = pad_head_dim(dout), qp = pad_head_dim(q), kp = pad_head_dim(k), vp = pad_head_dim(v);
  // The fused kernels want out in the input dtype (strategies hold it in float32).
  const at::Tensor op = pad_head_dim(out.to(q.scalar_type()));
  if (cudnn_route(plan, fused, qp, kp, scale))
    return cudnn_backward(dp, qp, kp, vp, op, lse, plan.groups[0].right == 0, scale, d);
  const at::Tensor lse_aten = lse_for_aten(lse);
  for (const PieceGroup& g : plan.groups) {
    if (fused == Fused::Flash)
      flash_backward_group(g, dp, qp, kp, vp, op, lse_aten, scale, acc);
    else
      efficient_backward_group(g, dp, qp, kp, vp, op, lse_aten, scale, acc);
  }
  acc.allocate_if_needed();  // no group at all (every key masked): zero gradients
  return {acc.dq, acc.dk, acc.dv};
}

void merge_into(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b) {
  const c10::cuda::CUDAGuard guard(out_acc.device());
  if (out_acc.scalar_type() == at::kDouble) {
    // float64 accumulators: the same formula in ATen ops (no kernel of ours for float64).
    LH_CHECK(lse_acc.scalar_type() == at::kDouble, "merge_into: lse_acc must be float64 with a float64 out_acc, got ",
             lse_acc.scalar_type());
    const at::Tensor la = lse_acc, lb = lse_b.to(at::kDouble);
    const at::Tensor mx = at::maximum(la, lb), mn = at::minimum(la, lb), none = mx == -kInf;
    const at::Tensor zero = at::zeros({}, la.options());
    const at::Tensor lse = at::where(none, mx, mx + at::log1p(at::exp(at::where(none, zero, mn - mx))));
    const at::Tensor safe = at::where(none, zero, lse);
    const at::Tensor wa = at::where(none, zero, at::exp(la - safe)), wb = at::where(none, zero, at::exp(lb - safe));
    out_acc.mul_(wa.t().unsqueeze(-1)).add_(out_b.to(at::kDouble) * wb.t().unsqueeze(-1));
    lse_acc.copy_(lse);
    return;
  }
  LH_CHECK(lse_acc.scalar_type() == at::kFloat, "merge_into: lse_acc must be float32 with a float32 out_acc, got ",
           lse_acc.scalar_type());
  const at::Tensor ob = out_b.scalar_type() == at::kDouble ? out_b.to(at::kFloat) : out_b.contiguous();
  launch_merge(out_acc, lse_acc, ob, lse_b.to(at::kFloat).contiguous());
}

}  // namespace longhaul::cuda

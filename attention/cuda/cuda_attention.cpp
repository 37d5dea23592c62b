// The ATen adapter of the CUDA backend: plans a block into varlen pieces (block_plan.h), routes
// each piece group to a kernel (route_table.h: the table and its reasons), runs it, and merges
// pieces that share query rows exactly. One file per route: route_cudnn (dense and ragged cuDNN),
// route_cudnn_band (cuDNN's graph API with window bounds), route_flash (FlashAttention-2 varlen),
// route_efficient (memory-efficient, float32); the exact path is attention/chunked_math.h (any
// device). route_common holds what the routes share (row bookkeeping, our LSE fix-up and merge
// kernels, gradient accumulators).
//
// Determinism: gradients of pieces that share rows are added with index_add_ (atomics on CUDA),
// so the fused backward is not bitwise reproducible run to run; the fallback is.
#include "attention/cuda/cuda_attention.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>
#include <optional>

#include "attention/cuda/block_plan.h"
#include "attention/chunked_math.h"
#include "attention/cuda/route_common.h"
#include "attention/cuda/route_cudnn.h"
#include "attention/cuda/route_cudnn_band.h"
#include "attention/cuda/route_efficient.h"
#include "attention/cuda/route_flash.h"
#include "attention/cuda/route_table.h"
#include "core/errors.h"

namespace longhaul::cuda {
namespace {

using namespace routes;

constexpr double kInf = std::numeric_limits<double>::infinity();

BlockPlan make_plan(const BlockView& view, const Mask& mask) {
  const at::Tensor qp = view.q_pos.to(at::kLong).contiguous(), kp = view.k_pos.to(at::kLong).contiguous();
  return plan_block(mask.spec(), qp.data_ptr<int64_t>(), qp.numel(), kp.data_ptr<int64_t>(), kp.numel());
}

DTypeClass dtype_class(const at::Tensor& q) {
  const auto t = q.scalar_type();
  if (t == at::kHalf || t == at::kBFloat16) return DTypeClass::Half;
  return t == at::kFloat ? DTypeClass::Float : DTypeClass::Double;
}

// Whether ATen's SDPA picks cuDNN for every piece of the groups the per-piece dense cuDNN route
// could take (host-side checks on row-range views, no kernel runs).
bool dense_cudnn_takes_pieces(const BlockPlan& plan, const at::Tensor& q, const at::Tensor& k, double scale) {
  bool any = false;
  for (const PieceGroup& g : plan.groups) {
    if (!dense_pieces_candidate(g)) continue;
    for (const Piece& p : g.pieces) {
      if (!prefers_cudnn(q.narrow(0, p.q_row, p.m), k.narrow(0, p.k_row, p.n), g.right == 0, scale)) return false;
      any = true;
    }
  }
  return any;
}

// What the route table needs to know about this block on this device. The probes (SDPA's choice,
// ragged cuDNN) run only where the table could use their answer.
Route route_for(const BlockPlan& plan, const Mask& mask, const at::Tensor& q, const at::Tensor& k, double scale) {
  RouteInputs in;
  in.dtype = dtype_class(q);
  in.head_dim = q.size(2);
  in.sm_major = at::cuda::getCurrentDeviceProperties()->major;
  in.mha = q.size(1) == k.size(1);
  in.cudnn_varlen = false;
  const bool fused_half = in.dtype == DTypeClass::Half && !plan.fragmented && in.sm_major >= 8;
  if (fused_half) {
    // Head dims past 128 stay off dense cuDNN: SDPA's choice screens only the forward there.
    const bool dense_head_dim = q.size(2) <= 128;
    if (const Piece* whole = whole_block_piece(plan, q.size(0), k.size(0));
        whole && full_or_causal(plan.groups[0]) && dense_head_dim) {
      const bool causal = plan.groups[0].right == 0;
      (causal ? in.dense_cudnn_causal : in.dense_cudnn_full) = prefers_cudnn(q, k, causal, scale);
    }
    // Dense cuDNN builds a graph per piece shape: documents, whose lengths change every batch,
    // stay on the ragged call.
    if (in.mha && !mask.has_documents() && dense_head_dim)
      in.dense_cudnn_pieces = dense_cudnn_takes_pieces(plan, q, k, scale);
    bool any_candidate = false;
    for (const PieceGroup& g : plan.groups) any_candidate = any_candidate || full_or_causal(g);
    if (any_candidate) in.cudnn_varlen = cudnn_varlen_usable(q, k);
    // Any group may reach the band route: windows and non-square causal pieces both ways, ragged
    // cuDNN groups in their backward.
    if (!plan.groups.empty()) in.cudnn_band = cudnn_band_usable(q, k);
  }
  if (in.dtype == DTypeClass::Float && !plan.fragmented) {
    bool windows = false, square = true;
    for (const PieceGroup& g : plan.groups)
      if (g.left != -1) {
        windows = true;
        for (const Piece& p : g.pieces) square = square && p.m == p.n;
      }
    in.efficient_window = !windows || efficient_window_usable(q, square);
  }
  return route_block(plan, q.size(0), k.size(0), in);
}

}  // namespace

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale) {
  const c10::cuda::CUDAGuard guard(q.device());
  const BlockPlan plan = make_plan(view, mask);
  const at::Tensor qp = pad_head_dim(q), kp = pad_head_dim(k), vp = pad_head_dim(v);
  const Route route = route_for(plan, mask, qp, kp, scale);
  // Unrounded float32 (float64) out: attention_forward rounds it once, merges take it as is.
  if (route.fallback()) return chunked_math::forward(q, k, v, view, mask, scale);
  const int64_t tq = q.size(0), h = q.size(1), d = q.size(2);
  // A piece on a kernel called once per piece (memory-efficient or dense cuDNN).
  auto piece_forward = [&](Kernel kern, const PieceGroup& g, const Piece& p) {
    return kern == Kernel::EfficientPieces ? efficient_forward_piece(g, p, qp, kp, vp, scale)
                                           : cudnn_forward_piece(g, p, qp, kp, vp, scale);
  };
  // One dense or single-piece kernel over the whole block: its output is the answer, with no
  // accumulator, merge or scatter around it (varlen calls that tile the block: below).
  if (const Piece* whole = whole_block_piece(plan, tq, k.size(0))) {
    const Kernel kern = route.launches[0].kernel;
    if (kern == Kernel::CudnnDense || kern == Kernel::CudnnPieces || kern == Kernel::EfficientPieces) {
      // Dense cuDNN over the whole block is the one-piece case of the per-piece route (a shape
      // cuDNN refuses goes to FlashAttention-2 there).
      AttentionOutput r = piece_forward(kern, plan.groups[0], *whole);
      if (r.out.size(2) != d) r.out = r.out.narrow(2, 0, d).contiguous();  // merges want packed rows
      return r;
    }
  }
  // A varlen group's output, if the launch is one (cuDNN ragged or band, or FlashAttention-2).
  auto varlen_output = [&](const Launch& l) -> std::optional<GroupOutput> {
    const PieceGroup& g = plan.groups[l.group];
    if (l.kernel == Kernel::CudnnVarlen) return cudnn_varlen_forward_pieces(g, qp, kp, vp, scale);
    if (l.kernel == Kernel::CudnnBand) return cudnn_band_forward_pieces(g, qp, kp, vp, scale);
    if (l.kernel == Kernel::FlashVarlen) return flash_forward_pieces(g, qp, kp, vp, scale);
    return std::nullopt;
  };
  std::optional<GroupOutput> first;
  if (route.launches.size() == 1 && (first = varlen_output(route.launches[0])) && first->qr.identity &&
      plan.groups[route.launches[0].group].layer_begin.size() == 2)
    // One call whose rows tile the block (documents).
    return {first->out.size(2) == d ? first->out : first->out.narrow(2, 0, d).contiguous(), first->lse};
  at::Tensor out_acc = at::zeros({tq, h, d}, q.options().dtype(at::kFloat));
  at::Tensor lse_acc = at::full({h, tq}, -kInf, q.options().dtype(at::kFloat));
  for (const Launch& l : route.launches) {
    const PieceGroup& g = plan.groups[l.group];
    if (l.kernel == Kernel::EfficientPieces || l.kernel == Kernel::CudnnPieces) {
      merge_each_piece(g, tq, out_acc, lse_acc, [&](const Piece& p) { return piece_forward(l.kernel, g, p); });
      continue;
    }
    // CudnnDense is whole-block only, handled above.
    std::optional<GroupOutput> o = first ? std::move(first) : varlen_output(l);
    first.reset();
    merge_group(g, *o, out_acc, lse_acc);
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
  // dO contiguous: cuDNN's graph cache keys on q, k and v's layout only, so a graph built for
  // one dO layout would be reused for another (a no-op for contiguous inputs).
  const at::Tensor dp = pad_head_dim(dout).contiguous(), qp = pad_head_dim(q), kp = pad_head_dim(k),
                   vp = pad_head_dim(v);
  const Route route = route_for(plan, mask, qp, kp, scale).backward();
  if (route.fallback()) return chunked_math::backward(dout, q, k, v, row_sums, lse, view, mask, scale);
  const int64_t tq = q.size(0), h = q.size(1), d = q.size(2), tk = k.size(0), hkv = k.size(1);
  const auto f32 = q.options().dtype(at::kFloat);
  GradAcc acc{{}, {}, {}, {tq, h, d}, {tk, hkv, d}, f32};
  // The fused kernels want out in the input dtype (strategies hold it in float32). They read it
  // only to compute the row sums D = Σ dO·O, so where only D travelled (TokenRing) an out made
  // from D (attention_out_for_row_sums) gives them the same D.
  const at::Tensor o = out.defined() ? out.to(q.scalar_type()) : attention_out_for_row_sums(dout, row_sums);
  const at::Tensor op = pad_head_dim(o).contiguous();
  // lse in ATen's convention, made once and only if a launch takes it (dense cuDNN does not).
  at::Tensor lse_aten_once;
  auto lse_aten = [&]() -> const at::Tensor& {
    if (!lse_aten_once.defined()) lse_aten_once = lse_for_aten(lse);
    return lse_aten_once;
  };
  for (const Launch& l : route.launches) {
    const PieceGroup& g = plan.groups[l.group];
    switch (l.kernel) {
      case Kernel::CudnnBand: cudnn_band_backward_group(g, dp, qp, kp, vp, op, lse_aten(), scale, acc); break;
      case Kernel::EfficientPieces: efficient_backward_group(g, dp, qp, kp, vp, op, lse_aten(), scale, acc); break;
      // Dense cuDNN, per piece or over the whole block (its one-piece case), takes longhaul's lse
      // as is (every row of a piece sees a key).
      case Kernel::CudnnDense:
      case Kernel::CudnnPieces: cudnn_backward_group(g, dp, qp, kp, vp, op, lse, scale, acc); break;
      default: flash_backward_group(g, dp, qp, kp, vp, op, lse_aten(), scale, acc);
    }
  }
  acc.allocate_if_needed();  // no group at all (every key masked): zero gradients
  return {acc.dq, acc.dk, acc.dv};
}

std::string route_summary(const at::Tensor& q, const at::Tensor& k, const BlockView& view, const Mask& mask,
                          double scale) {
  const c10::cuda::CUDAGuard guard(q.device());
  const Route forward = route_for(make_plan(view, mask), mask, pad_head_dim(q), pad_head_dim(k), scale);
  const std::string f = forward.describe(), b = forward.backward().describe();
  return f == b ? f : f + " (backward: " + b + ")";
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
  const at::Tensor ob = out_b.to(at::kFloat).contiguous();  // the kernel reads packed [T, H, D]
  launch_merge(out_acc, lse_acc, ob, lse_b.to(at::kFloat).contiguous());
}

}  // namespace longhaul::cuda

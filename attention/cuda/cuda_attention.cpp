// The ATen adapter of the CUDA backend: plans a block into varlen pieces (block_plan.h), runs them
// through torch's fused kernels, normalises their LSE conventions with our kernels (kernels.h)
// and merges pieces that share query rows exactly. What no fused kernel takes goes to the exact
// chunked math path (fallback.h).
//
// Routing (inputs already validated by attention.cpp):
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
#include <ATen/SDPBackend.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <array>
#include <limits>
#include <optional>
#include <vector>

#include "attention/cuda/block_plan.h"
#include "attention/cuda/fallback.h"
#include "attention/cuda/kernels.h"
#include "core/errors.h"

namespace longhaul::cuda {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kMaxFusedHeadDim = 256;

enum class Fused { Flash, Efficient, None };

kernels::DType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kernels::DType::Float32;
    case at::kHalf: return kernels::DType::Float16;
    case at::kBFloat16: return kernels::DType::BFloat16;
    default: throw Unsupported(detail::str_cat("cuda attention kernels: dtype ", t, " is not supported"));
  }
}

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

// Zero-pads the head dim to a multiple of 8 (what the fused kernels need; exact for q·k and v).
at::Tensor pad_head_dim(const at::Tensor& x) {
  const int64_t pad = (8 - x.size(-1) % 8) % 8;
  return pad == 0 ? x : at::constant_pad_nd(x, {0, pad});
}

BlockPlan make_plan(const BlockView& view, const Mask& mask) {
  at::Tensor qp = view.q_pos.contiguous(), kp = view.k_pos.contiguous();
  at::Tensor qd = mask.documents_of(qp), kd = mask.documents_of(kp);
  return plan_block(mask.spec(), qp.data_ptr<int64_t>(), qd.data_ptr<int64_t>(), qp.numel(), kp.data_ptr<int64_t>(),
                    kd.data_ptr<int64_t>(), kp.numel());
}

// The one piece of a plan that covers every q row and every key, if that is the whole plan (a
// self block, a ring step on whole blocks): its kernel output is the answer, with no
// accumulator, merge or scatter around it.
const Piece* whole_block_piece(const BlockPlan& plan, int64_t tq, int64_t tk) {
  if (plan.groups.size() != 1 || plan.groups[0].pieces.size() != 1) return nullptr;
  const Piece& p = plan.groups[0].pieces[0];
  return p.q_row == 0 && p.m == tq && p.k_row == 0 && p.n == tk ? &p : nullptr;
}

// Row indices of a range of pieces (q or k side) plus int32 cumulative lengths, on the device.
struct Rows {
  at::Tensor index;        // int64 [total]
  at::Tensor cu;           // int32 [pieces + 1]
  int64_t total = 0, max_len = 0;
  bool identity = false;   // the rows are exactly 0..T-1 in order: no gather needed
};

Rows piece_rows(const std::vector<Piece>& pieces, size_t begin, size_t end, bool q_side, int64_t t_all,
                const at::Device& dev) {
  Rows r;
  auto row_of = [&](size_t i) { return q_side ? pieces[i].q_row : pieces[i].k_row; };
  auto len_of = [&](size_t i) { return q_side ? pieces[i].m : pieces[i].n; };
  r.identity = end - begin == 1 && len_of(begin) == t_all && row_of(begin) == 0;
  if (r.identity) {  // the common whole-block case: no host-side index, no copy to the device
    r.total = r.max_len = t_all;
    LH_CHECK(t_all < std::numeric_limits<int32_t>::max(), "cuda attention: more than 2^31 rows in one varlen call");
    r.index = at::arange(t_all, at::TensorOptions().dtype(at::kLong).device(dev));
    r.cu = at::tensor({0, static_cast<int32_t>(t_all)}, at::kInt).to(dev);
    return r;
  }
  std::vector<int64_t> idx;
  std::vector<int32_t> cu{0};
  for (size_t i = begin; i < end; ++i) {
    const int64_t row = row_of(i), len = len_of(i);
    for (int64_t j = 0; j < len; ++j) idx.push_back(row + j);
    r.max_len = std::max(r.max_len, len);
    LH_CHECK(static_cast<int64_t>(idx.size()) < std::numeric_limits<int32_t>::max(),
             "cuda attention: more than 2^31 rows in one varlen call");
    cu.push_back(static_cast<int32_t>(idx.size()));
  }
  r.total = static_cast<int64_t>(idx.size());
  r.index = at::tensor(idx, at::kLong).to(dev);
  r.cu = at::tensor(std::vector<int32_t>(cu), at::kInt).to(dev);
  return r;
}

at::Tensor gather(const at::Tensor& x, const Rows& r) { return r.identity ? x : x.index_select(0, r.index); }

// Normalises an ATen logsumexp (any strides, [H, rows] after squeezing) to [H, rows] float32 and
// zeroes the out rows of rows that saw no key.
at::Tensor fix_lse(const at::Tensor& aten_lse, at::Tensor& out, int64_t rows) {
  at::Tensor l = aten_lse;
  if (l.dim() == 3 && l.size(0) == 1) l = l.select(0, 0);
  if (l.dim() != 2 || l.size(0) != out.size(1) || l.size(1) < rows || l.scalar_type() != at::kFloat)
    throw Unsupported(detail::str_cat("cuda attention: unexpected logsumexp from ATen: ", l.sizes(), " ",
                                      l.scalar_type(), ", expected [H, >= ", rows, "] float32 (torch version?)"));
  at::Tensor lse = at::empty({out.size(1), rows}, l.options());
  kernels::LseFixParams p;
  p.lse_in = l.data_ptr<float>();
  p.in_head_stride = l.stride(0);
  p.in_row_stride = l.stride(1);
  p.lse_out = lse.data_ptr<float>();
  p.out = out.data_ptr();
  p.out_type = kernel_dtype(out.scalar_type());
  p.tokens = rows;
  p.heads = out.size(1);
  p.head_dim = out.size(2);
  kernels::launch_lse_fix(p, at::cuda::getCurrentCUDAStream());
  return lse;
}

void launch_merge(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b) {
  kernels::MergeParams p;
  p.out_acc = out_acc.data_ptr<float>();
  p.lse_acc = lse_acc.data_ptr<float>();
  p.out_b = out_b.data_ptr();
  p.out_b_type = kernel_dtype(out_b.scalar_type());
  p.lse_b = lse_b.data_ptr<float>();
  p.tokens = out_acc.size(0);
  p.heads = out_acc.size(1);
  p.head_dim = out_acc.size(2);
  kernels::launch_merge(p, at::cuda::getCurrentCUDAStream());
}

// Merges (out_b, lse_b) of the given q rows (disjoint) into the accumulators.
void merge_rows(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& rows, bool identity,
                const at::Tensor& out_b, const at::Tensor& lse_b) {
  const at::Tensor ob = out_b.narrow(2, 0, out_acc.size(2)).contiguous(), lb = lse_b.contiguous();
  if (identity) {
    launch_merge(out_acc, lse_acc, ob, lb);
    return;
  }
  at::Tensor acc = out_acc.index_select(0, rows), lacc = lse_acc.index_select(1, rows);
  launch_merge(acc, lacc, ob, lb);
  out_acc.index_copy_(0, rows, acc);
  lse_acc.index_copy_(1, rows, lacc);
}

// Flash's window arguments for a group: is_causal for the plain diagonal, explicit offsets else.
struct FlashWindow {
  bool causal;
  std::optional<int64_t> left, right;
};
FlashWindow flash_window(const PieceGroup& g) {
  if (g.left == -1 && g.right == 0) return {true, std::nullopt, std::nullopt};
  return {false, g.left, g.right};
}

// Flash's output for all pieces of a group: out [rows, H, Dp] (input dtype) and the fixed-up
// lse [H, rows] of the q rows `qr` (pieces in order).
struct GroupOutput {
  at::Tensor out, lse;
  Rows qr;
};

GroupOutput flash_forward_pieces(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 double scale) {
  Rows qr = piece_rows(g.pieces, 0, g.pieces.size(), true, q.size(0), q.device());
  const Rows kr = piece_rows(g.pieces, 0, g.pieces.size(), false, k.size(0), q.device());
  const FlashWindow w = flash_window(g);
  auto res = at::_flash_attention_forward(gather(q, qr), gather(k, kr), gather(v, kr), qr.cu, kr.cu, qr.max_len,
                                          kr.max_len, 0.0, w.causal, false, scale, w.left, w.right);
  at::Tensor out = std::get<0>(res);
  at::Tensor lse = fix_lse(std::get<1>(res), out, qr.total);
  return {out, lse, std::move(qr)};
}

void flash_forward_group(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double scale, at::Tensor& out_acc, at::Tensor& lse_acc) {
  const GroupOutput r = flash_forward_pieces(g, q, k, v, scale);
  // One merge per layer: the rows of a layer are disjoint.
  int64_t r0 = 0;
  for (size_t l = 0; l + 1 < g.layer_begin.size(); ++l) {
    int64_t rows = 0;
    for (size_t i = g.layer_begin[l]; i < g.layer_begin[l + 1]; ++i) rows += g.pieces[i].m;
    merge_rows(out_acc, lse_acc, r.qr.index.narrow(0, r0, rows), r.qr.identity, r.out.narrow(0, r0, rows),
               r.lse.narrow(1, r0, rows));
    r0 += rows;
  }
}

// KV heads repeated to H (the memory-efficient kernel has no GQA): [n, H_kv, D] -> [1, n, H, D].
at::Tensor expand_heads(const at::Tensor& x, int64_t h) {
  const int64_t g = h / x.size(1);
  return (g == 1 ? x : x.repeat_interleave(g, 1)).unsqueeze(0);
}

int64_t efficient_mask_type(const PieceGroup& g) { return g.right == 0 ? 2 : 0; }  // bottom-right causal / none

// out [m, H, Dp] (input dtype) and fixed-up lse [H, m] of one piece.
AttentionOutput efficient_forward_piece(const PieceGroup& g, const Piece& p, const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, double scale) {
  const int64_t h = q.size(1);
  auto res = at::_efficient_attention_forward(
      q.narrow(0, p.q_row, p.m).unsqueeze(0), expand_heads(k.narrow(0, p.k_row, p.n), h),
      expand_heads(v.narrow(0, p.k_row, p.n), h), std::nullopt, std::nullopt, std::nullopt, std::nullopt,
      std::nullopt, 0.0, efficient_mask_type(g), true, scale);
  at::Tensor out = std::get<0>(res).select(0, 0).contiguous();  // [m, H, Dp]
  at::Tensor lse = fix_lse(std::get<1>(res), out, p.m);          // [1, H, ceil32(m)] -> [H, m]
  return {out, lse};
}

void efficient_forward_group(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             double scale, at::Tensor& out_acc, at::Tensor& lse_acc) {
  for (const Piece& p : g.pieces) {
    const AttentionOutput r = efficient_forward_piece(g, p, q, k, v, scale);
    const at::Tensor rows = at::arange(p.q_row, p.q_row + p.m, q.options().dtype(at::kLong));
    merge_rows(out_acc, lse_acc, rows, p.m == q.size(0), r.out, r.lse);
  }
}

// ---- cuDNN for whole square blocks -------------------------------------------------------------
// [T, H, D] as the [1, H, T, D] view the SDPA-style kernels take (no copy).
at::Tensor bhtd(const at::Tensor& x) { return x.unsqueeze(0).transpose(1, 2); }
at::Tensor from_bhtd(const at::Tensor& x) { return x.transpose(1, 2).squeeze(0); }

bool group_is_full_or_causal(const PieceGroup& g) { return g.left == -1 && (g.right == -1 || g.right == 0); }

}  // namespace

bool prefers_cudnn(const at::Tensor& q, const at::Tensor& k, bool causal, double scale) {
  // Square (so top-left and bottom-right causal agree) and MHA; then whatever ATen's SDPA would
  // choose for these inputs (cuDNN on Hopper when the build and the shapes allow it).
  if (q.size(0) != k.size(0) || q.size(1) != k.size(1)) return false;
  try {
    return at::_fused_sdp_choice(bhtd(q), bhtd(k), bhtd(k), std::nullopt, 0.0, causal, scale, false) ==
           static_cast<int64_t>(at::SDPBackend::cudnn_attention);
  } catch (const c10::Error&) {
    return false;
  }
}

namespace {

// The cuDNN route, forward and backward alike: a whole block with one full or causal piece,
// fp16/bf16 (the flash-capable dtypes), where ATen's SDPA would pick cuDNN.
bool cudnn_route(const BlockPlan& plan, Fused fused, const at::Tensor& q, const at::Tensor& k, double scale) {
  return fused == Fused::Flash && whole_block_piece(plan, q.size(0), k.size(0)) &&
         group_is_full_or_causal(plan.groups[0]) && prefers_cudnn(q, k, plan.groups[0].right == 0, scale);
}

AttentionOutput cudnn_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                              double scale) {
  auto res = at::_scaled_dot_product_cudnn_attention(bhtd(q), bhtd(k), bhtd(v), std::nullopt, true, 0.0, causal,
                                                     false, scale);
  at::Tensor out = from_bhtd(std::get<0>(res)).contiguous();  // a no-op: cuDNN writes q's layout
  at::Tensor l = std::get<1>(res);
  if (l.dim() == 4) l = l.squeeze(-1);  // [1, H, T, 1] -> [1, H, T]
  return {out, fix_lse(l, out, q.size(0))};
}

AttentionGrads cudnn_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& out, const at::Tensor& lse, bool causal, double scale, int64_t d) {
  const int64_t t = q.size(0);
  const at::Tensor none, philox = at::zeros({}, q.options().dtype(at::kLong));  // no dropout: never read
  const at::Tensor lse4 = lse.to(at::kFloat).contiguous().view({1, lse.size(0), lse.size(1), 1});
  auto g = at::_scaled_dot_product_cudnn_attention_backward(bhtd(dout), bhtd(q), bhtd(k), bhtd(v), bhtd(out), lse4,
                                                            philox, philox, none, none, none, t, t, 0.0, causal, scale);
  auto grad = [d](const at::Tensor& x) { return from_bhtd(x).narrow(2, 0, d).to(at::kFloat); };
  return {grad(std::get<0>(g)), grad(std::get<1>(g)), grad(std::get<2>(g))};
}

// Gradient accumulators (float32) of one backward call.
// Allocated (zeroed) on first accumulation, so a whole-block backward can hand over the
// kernel's own gradients instead.
struct GradAcc {
  at::Tensor dq, dk, dv;
  std::array<int64_t, 3> q_shape, kv_shape;
  at::TensorOptions options;
  void allocate_if_needed() {
    if (dq.defined()) return;
    dq = at::zeros(q_shape, options), dk = at::zeros(kv_shape, options), dv = at::zeros(kv_shape, options);
  }
};

// ATen's backward kernels treat lse = +inf as "P = 0" (flash's own empty-row value); longhaul
// writes -inf there, which would give exp(S + inf) = inf inside them.
at::Tensor lse_for_aten(const at::Tensor& lse) {
  at::Tensor l = lse.to(at::kFloat);
  return at::where(l == -kInf, at::full({}, kInf, l.options()), l);
}

void flash_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                          const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                          GradAcc& acc) {
  const Rows qr = piece_rows(g.pieces, 0, g.pieces.size(), true, q.size(0), q.device());
  const Rows kr = piece_rows(g.pieces, 0, g.pieces.size(), false, k.size(0), q.device());
  const FlashWindow w = flash_window(g);
  const at::Tensor lse_g = qr.identity ? lse.contiguous() : lse.index_select(1, qr.index).contiguous();
  // No dropout: the philox state is never read, but the operator wants tensors.
  const at::Tensor rng_state = at::zeros({2}, q.options().dtype(at::kLong));
  const at::Tensor unused = at::empty({0}, q.options().dtype(at::kLong));
  auto res = at::_flash_attention_backward(gather(dout, qr), gather(q, qr), gather(k, kr), gather(v, kr),
                                           gather(out, qr), lse_g, qr.cu, kr.cu, qr.max_len, kr.max_len, 0.0,
                                           w.causal, rng_state, unused, scale, w.left, w.right);
  const int64_t d = acc.q_shape[2];
  auto grad = [d](const at::Tensor& x) { return x.narrow(2, 0, d).to(at::kFloat); };
  if (qr.identity && kr.identity && !acc.dq.defined()) {  // the whole block: the kernel's grads are the answer
    acc.dq = grad(std::get<0>(res)), acc.dk = grad(std::get<1>(res)), acc.dv = grad(std::get<2>(res));
    return;
  }
  acc.allocate_if_needed();
  acc.dq.index_add_(0, qr.index, grad(std::get<0>(res)));
  acc.dk.index_add_(0, kr.index, grad(std::get<1>(res)));
  acc.dv.index_add_(0, kr.index, grad(std::get<2>(res)));
}

void efficient_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                              const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                              GradAcc& acc) {
  acc.allocate_if_needed();
  const int64_t h = q.size(1), hkv = k.size(1), d = acc.dq.size(2);
  const at::Tensor no_philox = at::zeros({}, at::TensorOptions().dtype(at::kLong));
  for (const Piece& p : g.pieces) {
    // The kernel reads logsumexp in its own padded layout [1, H, ceil32(m)].
    at::Tensor lse_p = at::zeros({1, h, (p.m + 31) / 32 * 32}, lse.options());
    lse_p.select(0, 0).narrow(1, 0, p.m).copy_(lse.narrow(1, p.q_row, p.m));
    auto res = at::_efficient_attention_backward(
        dout.narrow(0, p.q_row, p.m).unsqueeze(0), q.narrow(0, p.q_row, p.m).unsqueeze(0),
        expand_heads(k.narrow(0, p.k_row, p.n), h), expand_heads(v.narrow(0, p.k_row, p.n), h), std::nullopt,
        out.narrow(0, p.q_row, p.m).unsqueeze(0), std::nullopt, std::nullopt, p.m, p.n, lse_p, 0.0, no_philox,
        no_philox, efficient_mask_type(g), false, scale);
    auto group_sum = [&](const at::Tensor& x) {  // [1, n, H, Dp] -> [n, H_kv, d] float32
      return x.select(0, 0).narrow(2, 0, d).to(at::kFloat).view({p.n, hkv, h / hkv, d}).sum(2);
    };
    acc.dq.narrow(0, p.q_row, p.m).add_(std::get<0>(res).select(0, 0).narrow(2, 0, d).to(at::kFloat));
    acc.dk.narrow(0, p.k_row, p.n).add_(group_sum(std::get<1>(res)));
    acc.dv.narrow(0, p.k_row, p.n).add_(group_sum(std::get<2>(res)));
  }
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

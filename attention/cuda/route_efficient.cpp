#include "attention/cuda/route_efficient.h"

#include <cmath>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>

#include "attention/chunked_math.h"
#include "core/errors.h"

namespace longhaul::cuda::routes {
namespace {

// KV heads repeated to H (the memory-efficient kernel has no GQA): [n, H_kv, D] -> [1, n, H, D].
at::Tensor expand_heads(const at::Tensor& x, int64_t h) {
  const int64_t g = h / x.size(1);
  return (g == 1 ? x : x.repeat_interleave(g, 1)).unsqueeze(0);
}

int64_t efficient_mask_type(const PieceGroup& g) { return g.right == 0 ? 2 : 0; }  // bottom-right causal / none

// What the kernel's window_size means, read off the kernel itself once per device: the value
// (left + extra) that keeps exactly `left` keys before the diagonal, against the exact math path on
// a small causal window. `square_only`: the backward is exact only where rows and keys are equal in
// number (torch 2.11's backward applies the window without the bottom-right shift its forward
// uses), so a piece with more keys than rows (a ring step's) takes the exact path.
struct KernelWindow {
  std::optional<int64_t> extra;  // nullopt: no value is exact, float32 windows take the fallback
  bool square_only = false;
};

// The largest relative difference of the kernel's gradients from the exact ones on tq rows after
// tk - tq more keys under `window` with window_size left + extra; nullopt when its forward already
// differs (another extra is tried then).
std::optional<double> window_gradient_error(const at::TensorOptions& f32, int64_t tq, int64_t tk, int64_t left,
                                            int64_t extra) {
  const int64_t h = 2, d = 32;
  const at::Tensor q = probe_input(tq, h, d, 0.37, f32), k = probe_input(tk, h, d, 0.61, f32),
                   v = probe_input(tk, h, d, 0.23, f32), dout = probe_input(tq, h, d, 0.53, f32);
  const double scale = 1.0 / std::sqrt(double(d));
  const BlockView view = BlockView::contiguous(tk - tq, tq, 0, tk);
  const Mask window = Mask::causal().window(left, 0);
  const AttentionOutput ref = chunked_math::forward(q, k, v, view, window, scale);
  auto res = at::_efficient_attention_forward(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), std::nullopt,
                                              std::nullopt, std::nullopt, std::nullopt, std::nullopt, 0.0, 2, true,
                                              scale, std::nullopt, left + extra);
  const at::Tensor out = std::get<0>(res);
  if ((out.select(0, 0) - ref.out).abs().max().item<double>() >= 1e-4) return std::nullopt;
  const at::Tensor row_sums = (dout * ref.out).sum(-1).transpose(0, 1).contiguous();  // [H, Tq]
  const AttentionGrads exact = chunked_math::backward(dout, q, k, v, row_sums, ref.lse, view, window, scale);
  const at::Tensor no_philox = at::zeros({}, at::TensorOptions().dtype(at::kLong));
  auto grads = at::_efficient_attention_backward(dout.unsqueeze(0), q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
                                                 std::nullopt, out, std::nullopt, std::nullopt, tq, tk,
                                                 std::get<1>(res), 0.0, no_philox, no_philox, 2, false, scale,
                                                 std::nullopt, left + extra);
  return worst_difference({relative_difference(std::get<0>(grads).select(0, 0), exact.dq),
                           relative_difference(std::get<1>(grads).select(0, 0), exact.dk),
                           relative_difference(std::get<2>(grads).select(0, 0), exact.dv)});
}

// A ring step's shape first (24 query rows after 16 more keys), then a square one (24 x 24).
KernelWindow probe_window(const at::TensorOptions& opt) {
  const auto f32 = opt.dtype(at::kFloat);
  const int64_t left = 5;
  try {
    for (int64_t extra : {1, 0, 2}) {
      const std::optional<double> ring_step = window_gradient_error(f32, 24, 40, left, extra);
      if (!ring_step) continue;
      if (*ring_step < 1e-4) return {extra, false};
      const std::optional<double> square = window_gradient_error(f32, 24, 24, left, extra);
      if (square && *square < 1e-4) {
        std::cerr << "longhaul: the memory-efficient kernel's backward is exact under its window only on square "
                     "pieces (gradients "
                  << *ring_step << " off the exact ones with more keys than rows); float32 window pieces with "
                                   "more keys than rows take the exact math path\n";
        return {extra, true};
      }
      std::cerr << "longhaul: the memory-efficient kernel's backward disagrees with its own window (gradients "
                << *ring_step << " off the exact ones); float32 windows take the exact math path\n";
      return {};
    }
    std::cerr << "longhaul: the memory-efficient kernel's window_size matches no causal window here; float32 "
                 "windows take the exact math path\n";
  } catch (const std::exception& e) {
    if (not_a_refusal(e)) throw;
    std::cerr << "longhaul: the memory-efficient kernel takes no window here (" << std::string(e.what()).substr(0, 200)
              << "); float32 windows take the exact math path\n";
  }
  return {};
}

const KernelWindow& kernel_window(const at::Tensor& q) {
  static std::mutex mu;
  static std::map<int, KernelWindow> probed;
  const std::lock_guard<std::mutex> lock(mu);
  auto it = probed.find(q.get_device());
  if (it == probed.end()) it = probed.emplace(q.get_device(), probe_window(q.options())).first;
  return it->second;
}

std::optional<int64_t> efficient_window(const PieceGroup& g, const at::Tensor& q) {
  if (g.left == -1) return std::nullopt;
  const std::optional<int64_t> extra = kernel_window(q).extra;
  LH_CHECK(extra.has_value(), "efficient route given a window where the kernel's window is off");
  return g.left + *extra;
}

}  // namespace

bool efficient_window_usable(const at::Tensor& q, bool square_pieces) {
  const KernelWindow& w = kernel_window(q);
  return w.extra.has_value() && (!w.square_only || square_pieces);
}

AttentionOutput efficient_forward_piece(const PieceGroup& g, const Piece& p, const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, double scale) {
  const int64_t h = q.size(1);
  auto res = at::_efficient_attention_forward(
      q.narrow(0, p.q_row, p.m).unsqueeze(0), expand_heads(k.narrow(0, p.k_row, p.n), h),
      expand_heads(v.narrow(0, p.k_row, p.n), h), std::nullopt, std::nullopt, std::nullopt, std::nullopt,
      std::nullopt, 0.0, efficient_mask_type(g), true, scale, std::nullopt, efficient_window(g, q));
  at::Tensor out = std::get<0>(res).select(0, 0).contiguous();  // [m, H, Dp]
  at::Tensor lse = fix_lse(std::get<1>(res), out, p.m);          // [1, H, ceil32(m)] -> [H, m]
  return {out, lse};
}

void efficient_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                              const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                              GradAcc& acc) {
  const int64_t h = q.size(1), hkv = k.size(1), d = acc.q_shape[2];
  const at::Tensor no_philox = at::zeros({}, at::TensorOptions().dtype(at::kLong));
  for (const Piece& p : g.pieces) {
    // The kernel reads logsumexp in its own padded layout [1, H, ceil32(m)].
    at::Tensor lse_p = at::zeros({1, h, (p.m + 31) / 32 * 32}, lse.options());
    lse_p.select(0, 0).narrow(1, 0, p.m).copy_(lse.narrow(1, p.q_row, p.m));
    auto res = at::_efficient_attention_backward(
        dout.narrow(0, p.q_row, p.m).unsqueeze(0), q.narrow(0, p.q_row, p.m).unsqueeze(0),
        expand_heads(k.narrow(0, p.k_row, p.n), h), expand_heads(v.narrow(0, p.k_row, p.n), h), std::nullopt,
        out.narrow(0, p.q_row, p.m).unsqueeze(0), std::nullopt, std::nullopt, p.m, p.n, lse_p, 0.0, no_philox,
        no_philox, efficient_mask_type(g), false, scale, std::nullopt, efficient_window(g, q));
    auto group_sum = [&](const at::Tensor& x) {  // [1, n, H, Dp] -> [n, H_kv, d] float32
      return x.select(0, 0).narrow(2, 0, d).to(at::kFloat).view({p.n, hkv, h / hkv, d}).sum(2);
    };
    add_piece_grads(p, {std::get<0>(res).select(0, 0).narrow(2, 0, d).to(at::kFloat), group_sum(std::get<1>(res)),
                        group_sum(std::get<2>(res))},
                    acc);
  }
}

}  // namespace longhaul::cuda::routes

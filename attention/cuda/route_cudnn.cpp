#include "attention/cuda/route_cudnn.h"

#include <ATen/SDPBackend.h>

#include <optional>

#include "attention/cuda/cuda_attention.h"
#include "attention/cuda/route_common.h"

namespace longhaul::cuda {
namespace {

// [T, H, D] as the [1, H, T, D] view the SDPA-style kernels take (no copy).
at::Tensor bhtd(const at::Tensor& x) { return x.unsqueeze(0).transpose(1, 2); }
at::Tensor from_bhtd(const at::Tensor& x) { return x.transpose(1, 2).squeeze(0); }

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

namespace routes {

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

}  // namespace routes
}  // namespace longhaul::cuda

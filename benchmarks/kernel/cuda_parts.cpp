#include "benchmarks/kernel/cuda_parts.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <optional>

#include "attention/attention.h"
#include "benchmarks/common/report.h"
#include "longhaul/config.h"
#if LONGHAUL_WITH_CUDA
#include "attention/cuda/cuda_attention.h"
#endif
#include "core/errors.h"

namespace longhaul::bench {

bool bare_flash_applies(const at::Tensor& q, const std::string& mask_name) {
  const auto t = q.scalar_type();
  return q.is_cuda() && (t == at::kHalf || t == at::kBFloat16) && (mask_name == "causal" || mask_name == "full") &&
         q.size(2) % 8 == 0 && q.size(2) <= 256;
}

BareFlash::BareFlash(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& dout,
                     bool causal)
    : q_(q), k_(k), v_(v), dout_(dout), causal_(causal), scale_(1.0 / std::sqrt(double(q.size(2)))) {
  cu_q_ = at::tensor({0, static_cast<int32_t>(q.size(0))}, at::kInt).to(q.device());
  cu_k_ = at::tensor({0, static_cast<int32_t>(k.size(0))}, at::kInt).to(q.device());
  rng_state_ = at::zeros({2}, q.options().dtype(at::kLong));
  unused_ = at::empty({0}, q.options().dtype(at::kLong));
#if LONGHAUL_WITH_CUDA
  cudnn_ = cuda::prefers_cudnn(q, k, causal, scale_);
#endif
}

namespace {
at::Tensor bhtd(const at::Tensor& x) { return x.unsqueeze(0).transpose(1, 2); }
}  // namespace

void BareFlash::forward() {
  if (cudnn_) {
    auto res = at::_scaled_dot_product_cudnn_attention(bhtd(q_), bhtd(k_), bhtd(v_), std::nullopt, true, 0.0, causal_,
                                                       false, scale_);
    out_ = std::get<0>(res);
    lse_ = std::get<1>(res);
    return;
  }
  auto res = at::_flash_attention_forward(q_, k_, v_, cu_q_, cu_k_, q_.size(0), k_.size(0), 0.0, causal_, false, scale_,
                                          std::nullopt, std::nullopt);
  out_ = std::get<0>(res);
  lse_ = std::get<1>(res);
}

void BareFlash::backward() {
  if (cudnn_) {
    const at::Tensor none, philox = at::zeros({}, q_.options().dtype(at::kLong));
    at::_scaled_dot_product_cudnn_attention_backward(bhtd(dout_), bhtd(q_), bhtd(k_), bhtd(v_), out_, lse_, philox,
                                                     philox, none, none, none, q_.size(0), k_.size(0), 0.0, causal_,
                                                     scale_);
    return;
  }
  at::_flash_attention_backward(dout_, q_, k_, v_, out_, lse_, cu_q_, cu_k_, q_.size(0), k_.size(0), 0.0, causal_,
                                rng_state_, unused_, scale_, std::nullopt, std::nullopt);
}

MergeBandwidth measure_merge_bandwidth(int64_t t, int64_t h, int64_t d, at::ScalarType partial, const TimingPlan& plan,
                                       int repeat) {
  LH_CHECK(repeat >= 1, "merge bandwidth: repeat must be >= 1, got ", repeat);
  const auto f32 = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  at::Tensor out_acc = at::randn({t, h, d}, f32), lse_acc = at::randn({h, t}, f32);
  const at::Tensor out_b = at::randn({t, h, d}, f32).to(partial), lse_b = at::randn({h, t}, f32);
  at::Tensor src = at::randn({t, h, d}, f32), dst = at::empty_like(src);
  const c10::Device dev = out_acc.device();
  const PhaseSamples s = time_phases(plan, [&] {
    Stopwatch watch(dev);
    for (int i = 0; i < repeat; ++i) merge_into(out_acc, lse_acc, out_b, lse_b);
    const double merge = watch.lap();
    for (int i = 0; i < repeat; ++i) dst.copy_(src);
    const double copy = watch.lap();
    return std::vector<double>{merge / repeat, copy / repeat};
  });
  MergeBandwidth m{t, h, d};
  m.merge_ms = median_of_first_phases(s, 1);
  std::vector<double> copies;
  for (const auto& run : s) copies.push_back(run[1]);
  m.copy_ms = median(copies);
  const double n = double(t) * double(h) * double(d);
  // Merge: read and write the float32 accumulator, read the partial; both LSEs read, one written.
  const double merge_bytes = n * (4 + 4 + double(at::elementSize(partial))) + double(h) * double(t) * 4 * 3;
  const double copy_bytes = n * 4 * 2;
  m.merge_gb_per_s = merge_bytes / (m.merge_ms * 1e-3) / 1e9;
  m.copy_gb_per_s = copy_bytes / (m.copy_ms * 1e-3) / 1e9;
  return m;
}

}  // namespace longhaul::bench

#include "parallel/kernel_rate.h"

#include <ATen/ATen.h>

#include <chrono>

#include "attention/attention.h"

namespace longhaul {

namespace {
// Seconds per call of f, averaged over three after one warm-up.
template <class F>
double seconds_per_call(F&& f) {
  f();
  const auto t0 = std::chrono::steady_clock::now();
  const int reps = 3;
  for (int i = 0; i < reps; ++i) f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}
}  // namespace

double measure_kernel_gflops(int64_t h, int64_t h_kv, int64_t d, int64_t t) {
  at::Tensor q = at::randn({t, h, d}), k = at::randn({t, h_kv, d}), v = at::randn({t, h_kv, d});
  const auto view = BlockView::self(t);
  const Mask mask = Mask::causal();
  auto f = attention_forward(q, k, v, view, mask);
  attention_backward(q, q, k, v, f.out, f.lse, view, mask);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  f = attention_forward(q, k, v, view, mask);
  attention_backward(q, q, k, v, f.out, f.lse, view, mask);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 3.5 * 4.0 * double(mask.area(0, t, 0, t)) * double(h * d) / s / 1e9;
}

double measure_dense_gflops(int64_t rows, int64_t in, int64_t out) {
  at::Tensor x = at::randn({rows, in}), w = at::randn({in, out}), dy = at::randn({rows, out});
  auto run = [&] {
    at::Tensor y = at::mm(x, w), dx = at::mm(dy, w.t()), dw = at::mm(x.t(), dy);
    return y.sum().item<double>() + dx.sum().item<double>() + dw.sum().item<double>();
  };
  return 6.0 * double(rows) * double(in) * double(out) / seconds_per_call(run) / 1e9;
}

double measure_memory_gbps(int64_t bytes) {
  at::Tensor x = at::randn({bytes / 4});
  return 2.0 * double(bytes) / seconds_per_call([&] { x.mul_(0.5); }) / 1e9;
}

double measure_first_touch_gbps(int64_t bytes) {
  at::Tensor x = at::empty({bytes / 4});
  const double warm = seconds_per_call([&] { x.fill_(1.0); });
  const double fresh = seconds_per_call([&] { at::empty({bytes / 4}).fill_(1.0); });
  return double(bytes) / std::max(fresh - warm, 1e-3 * warm) / 1e9;  // a free first touch: a large rate
}

}  // namespace longhaul

#include "benchmarks/cp/gpu_emulation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "benchmarks/common/compare.h"
#include "benchmarks/cp/cp_predict.h"
#include "benchmarks/cp/cp_row.h"
#include "benchmarks/cp/rank_copy.h"
#include "parallel/context_parallel.h"
#include "runtime/comm/local/communicator.h"
#include "core/errors.h"
#include "core/worst_error.h"
#include "longhaul/config.h"
#if LONGHAUL_WITH_CUDA
#include "attention/cuda/cuda_attention.h"
#endif

namespace longhaul::bench {
namespace {

Mask parse_mask(const std::string& s) {
  if (s == "causal") return Mask::causal();
  if (s == "full") return Mask::full();
  throw InvalidArgument("bench cp-gpu: mask '" + s + "' is not supported here, expected full or causal");
}

double rel_err(const at::Tensor& got, const at::Tensor& ref) { return relative_error(got, ref, 1.0); }

struct Timed {
  double fwd_ms = 0, bwd_ms = 0;
  int64_t peak_bytes = 0;  // strategy buffers at their high-water mark + this rank's inputs and results
};

int64_t bytes_of(const at::Tensor& t) { return t.defined() ? t.numel() * int64_t(t.element_size()) : 0; }

// The kernels a block of rank `qr`'s queries against rank `kr`'s keys runs on
// (cuda::route_summary; only shapes and positions matter, so q and k are views of the right
// length): what a row's time is made of. "-" in a build without CUDA.
std::string block_route(const at::Tensor& q, const at::Tensor& k, const Mask& mask, Layout layout, int p, int qr,
                        int kr) {
#if LONGHAUL_WITH_CUDA
  const at::Tensor qp = ShardPlan::for_mask(q.size(0), mask, layout, p, qr).positions(qr),
                   kp = ShardPlan::for_mask(k.size(0), mask, layout, p, kr).positions(kr);
  return cuda::route_summary(q.narrow(0, 0, qp.numel()), k.narrow(0, 0, kp.numel()), BlockView{qp, kp}, mask,
                             1.0 / std::sqrt(double(q.size(2))));
#else
  (void)q, (void)k, (void)mask, (void)layout, (void)p, (void)qr, (void)kr;
  return "-";
#endif
}

}  // namespace

std::vector<Row> run_gpu_emulation(const GpuEmulationOptions& o) {
  if (!at::hasCUDA()) throw Unsupported("bench cp-gpu: needs a CUDA device, and torch sees none here");
  LH_CHECK(o.T > 0 && o.H > 0 && o.H_kv > 0 && o.D > 0 && o.H % o.H_kv == 0, "bench cp-gpu: need positive T, H, "
           "H_kv, D with H % H_kv == 0, got T=", o.T, " H=", o.H, " H_kv=", o.H_kv, " D=", o.D);
  const at::ScalarType dtype = dtype_from_name(o.dtype, {"bf16", "fp16", "fp32"}, "bench cp-gpu");
  const Mask mask = parse_mask(o.mask);
  const Layout layout = layout_from_string(o.layout);
  for (const auto& s : o.strategies) strategy_from_string(s);  // names checked before any run
  const c10::Device dev(c10::kCUDA, 0);

  at::Generator gen = seeded_generator(dev, o.seed);  // drawn on the GPU
  auto normal = [&](int64_t heads) {
    return at::randn({o.T, heads, o.D}, gen, at::TensorOptions(at::kFloat).device(dev)).to(dtype);
  };
  const at::Tensor q = normal(o.H), k = normal(o.H_kv), v = normal(o.H_kv), dout = normal(o.H);
  const double flops = 3.5 * 4.0 * double(mask.area(0, o.T, 0, o.T)) * double(o.H) * double(o.D);  // fwd + bwd

  // The plain kernel on the whole sequence.
  const BlockView all = BlockView::self(o.T);
  AttentionOutput ref;
  const PhaseSamples single = time_phases(o.timing, [&] {
    Stopwatch watch(dev);
    ref = attention_forward(q, k, v, all, mask);
    const double f = watch.lap();
    attention_backward(dout, q, k, v, ref.out, ref.lse, all, mask);
    return std::vector<double>{f, watch.lap()};
  });
  const double single_ms = median_of_first_phases(single, 2), single_fwd_ms = median_of_first_phases(single, 1);
  const double single_tflops = flops / (single_ms * 1e-3) / 1e12;
  // The emulation's network, for the prediction beside each row: the largest rank's K,V block
  // between two thread-ranks on this GPU.
  const int p_min = o.ranks.empty() ? 1 : std::max(1, *std::min_element(o.ranks.begin(), o.ranks.end()));
  const int64_t kv_block = (o.T + p_min - 1) / p_min * 2 * o.H_kv * o.D * int64_t(c10::elementSize(dtype));
  const RankCopy copy = measure_rank_copy(dev, kv_block);
  const std::string copy_note = "copy " + std::to_string(int(copy.latency_s * 1e6)) + " us + " +
                                std::to_string(int(copy.bytes_per_s / 1e9)) + " GB/s";
  // The kernels of rank 0's blocks, once per P (every strategy but Ulysses runs the same blocks).
  std::map<int, std::string> routes;
  auto routes_of = [&](int p) -> const std::string& {
    auto it = routes.find(p);
    if (it == routes.end())
      it = routes.emplace(p, p == 1 ? "route: " + block_route(q, k, mask, layout, 1, 0, 0)
                                    : "route q0.k1: " + block_route(q, k, mask, layout, p, 0, 1) +
                                          "; q0.k0: " + block_route(q, k, mask, layout, p, 0, 0)).first;
    return it->second;
  };
  auto row = [&](const std::string& strategy, int p, const Timed& t, double err) {
    const double fwd_ms = t.fwd_ms, bwd_ms = t.bwd_ms;
    const double ms = fwd_ms + bwd_ms, agg = flops / (ms * 1e-3) / 1e12;
    double predicted = NAN;
    // Ulysses runs whole-sequence blocks of its heads, as the single row does: no route of its own.
    std::string note = p == 1 ? copy_note + "; " + routes_of(1) : strategy == "ulysses" ? "-" : routes_of(p);
    if (p > 1) try {
      GpuEmulationPredictionInput in;
      in.strategy = strategy_from_string(strategy), in.layout = layout, in.mask = mask;
      in.T = o.T, in.H = o.H, in.H_kv = o.H_kv, in.D = o.D, in.P = p, in.dtype = dtype;
      in.single_fwd_ms = single_fwd_ms;
      in.single_bwd_ms = single_ms - single_fwd_ms;
      in.copy_latency_s = copy.latency_s, in.copy_bytes_per_s = copy.bytes_per_s;
      predicted = predict_gpu_emulation_ms(in);
    } catch (const Error& e) {  // the measurement stands without its prediction
      note = std::string("no prediction: ") + e.what();
    }
    return cp_config_row(strategy, p == 1 ? std::string("-") : o.layout, o.mask, o.T, p, o.H, o.H_kv, o.D)
        .add("dtype", o.dtype)
        .add("fwd_ms", fwd_ms)
        .add("bwd_ms", bwd_ms)
        .add("tflops_per_rank", agg / p)
        .add("tflops_aggregate", agg)
        .add("single_kernel_tflops", single_tflops)
        .add("aggregate_over_single", agg / single_tflops)
        .add("tokens_per_s", double(o.T) / (ms * 1e-3))
        .add("peak_mb_per_rank", double(t.peak_bytes) / (1 << 20))
        .add("max_rel_err", err)
        .add("simulated_ms", predicted)
        .add("measured_over_simulated", ms / predicted)
        .add("note", note);
  };
  Timed one{single_fwd_ms, single_ms - single_fwd_ms,
            4 * bytes_of(q) + 2 * bytes_of(k) + 2 * bytes_of(v) + bytes_of(ref.lse)};  // in, out, grads (as q/k/v)
  std::vector<Row> rows{row("single", 1, one, 0.0)};

  for (int p : o.ranks) {
    for (const auto& name : o.strategies) {
      const Strategy strategy = strategy_from_string(name);
      if (strategy == Strategy::Ulysses && (o.H % p != 0 || (o.H_kv % p != 0 && p % o.H_kv != 0))) continue;
      std::mutex mu;
      Timed worst;
      double err = 0;
      CommOptions co;
      co.timeout = std::chrono::seconds(300);
      local::run_ranks(p, [&](Communicator& comm) {
        local::enter_device_rank(dev);  // its own stream, as if on its own GPU
        const ShardPlan plan = ShardPlan::for_mask(o.T, mask, layout, p, comm.rank());
        const at::Tensor ql = plan.shard(q), kl = plan.shard(k), vl = plan.shard(v), dl = plan.shard(dout);
        Options opts;
        opts.strategy = strategy;
        opts.layout = layout;
        ContextParallel cp(comm.shared_from_this(), opts);
        AttentionOutput f;
        AttentionGrads g;
        std::vector<double> fwd, bwd;
        for (int it = 0; it < o.timing.warmup + o.timing.iters; ++it) {
          comm.barrier()->wait();
          // Marks on this rank's stream, as in bench layer: a device-wide sync in one thread-rank
          // would wait for the others' kernels on the shared GPU, and leave it idle meanwhile.
          StreamMarks marks(dev);
          const size_t f0 = marks.mark();
          f = cp.forward(ql, kl, vl, plan, mask);
          const size_t f1 = marks.mark();
          comm.barrier()->wait();
          const size_t b0 = marks.mark();
          g = cp.backward(dl, ql, kl, vl, f.out, f.lse, plan, mask);
          const size_t b1 = marks.mark();
          const double tf = marks.ms(f0, f1), tb = marks.ms(b0, b1);
          if (it >= o.timing.warmup) fwd.push_back(tf), bwd.push_back(tb);
        }
        comm.barrier()->wait();  // every rank done timing before any checks
        const double e = rel_err(f.out, plan.shard(ref.out));
        const int64_t peak = cp.stats().peak_tracked_bytes + bytes_of(ql) + bytes_of(kl) + bytes_of(vl) + bytes_of(dl) +
                             bytes_of(f.out) + bytes_of(f.lse) + bytes_of(g.dq) + bytes_of(g.dk) + bytes_of(g.dv);
        std::lock_guard<std::mutex> lock(mu);
        worst.peak_bytes = std::max(worst.peak_bytes, peak);
        worst.fwd_ms = std::max(worst.fwd_ms, median(fwd));
        worst.bwd_ms = std::max(worst.bwd_ms, median(bwd));
        err = worst_error(err, e);
      }, co);
      rows.push_back(row(name, p, worst, err));
    }
  }
  return rows;
}

}  // namespace longhaul::bench

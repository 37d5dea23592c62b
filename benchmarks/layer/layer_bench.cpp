#include "benchmarks/layer/layer_bench.h"

#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "benchmarks/common/compare.h"
#include "core/resident_memory.h"
#include "benchmarks/cp/cp_row.h"
#include "parallel/context_parallel.h"
#include "runtime/comm/local/communicator.h"
#include "core/errors.h"
#include "train/model.h"
#include "core/worst_error.h"

namespace longhaul::bench {
namespace {

// Relative error allowed against P=1: the same sums in another order (and, in low precision, the
// attention's partial results rounded to the input dtype before their merge).
double tolerance(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return 1e-10;
    case at::kFloat: return 1e-4;
    default: return 5e-2;
  }
}

double rel_err(const at::Tensor& got, const at::Tensor& ref) { return relative_error(got, ref, 1e-30); }

// What one P produced: times (max over ranks), the gathered output and the summed weight grads.
struct LayerRun {
  double fwd_ms = 0, bwd_ms = 0, attention_ms = 0, peak_mb_per_rank = 0;
  at::Tensor out;                  // [T, dim], global order
  std::vector<at::Tensor> grads;   // weight grads summed over ranks, in BlockWeights::all() order
};

}  // namespace

std::vector<Row> run_layer_bench(const LayerBenchOptions& o) {
  const bool cuda = o.device == "cuda";
  LH_CHECK(cuda || o.device == "cpu", "bench layer: --device must be cuda or cpu, got '", o.device, "'");
  if (cuda && !at::hasCUDA())
    throw Unsupported("bench layer: --device cuda needs a CUDA device, and torch sees none here (use --device cpu)");
  const at::ScalarType dtype = dtype_from_name(o.dtype, {"bf16", "fp16", "fp32", "fp64"}, "bench layer");
  const c10::Device dev = cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  train::ModelOptions mo;
  mo.vocab = 16;  // unused: one block, no embedding
  mo.dim = o.dim;
  mo.layers = 1;
  mo.heads = o.heads;
  mo.kv_heads = o.kv_heads;
  mo.seed = o.seed;
  mo.validate();
  const Options cp_opts{strategy_from_string(o.strategy), layout_from_string(o.layout)};
  const Mask mask = Mask::causal();

  // The block's weights (the model's, on the CPU) and the inputs, drawn once in float32 on the device.
  const train::Transformer model(mo);
  const std::vector<at::Tensor> w0 = model.block_weights(0).all();
  at::Generator gen = seeded_generator(dev, o.seed + 1);
  const auto on_dev = at::TensorOptions().device(dev).dtype(dtype), f32 = on_dev.dtype(at::kFloat);
  const at::Tensor x = at::randn({o.T, o.dim}, gen, f32).to(dtype);
  const at::Tensor dy = (at::randn({o.T, o.dim}, gen, f32) * 1e-2).to(dtype);

  auto run = [&](int p) {
    std::mutex mu;
    LayerRun res;
    std::vector<at::Tensor> grads(w0.size());
    CommOptions co;
    co.timeout = std::chrono::seconds(600);
    if (cuda) at::accelerator::synchronizeDevice(0), at::accelerator::resetPeakStats(0);
    const int64_t base = cuda ? int64_t(at::accelerator::getDeviceStats(0).allocated_bytes[0].current) : 0;
    PeakRssGrowth rss;
    local::run_ranks(p, [&](Communicator& comm) {
      local::enter_device_rank(dev);  // its own stream, as if on its own GPU
      const ShardPlan plan = ShardPlan::for_mask(o.T, mask, cp_opts.layout, p, comm.rank());
      ContextParallel cp(comm.shared_from_this(), cp_opts);
      train::BlockWeights w;
      std::vector<at::Tensor*> slots{&w.norm1, &w.wq, &w.wk, &w.wv, &w.wo, &w.norm2, &w.w1, &w.w3, &w.w2};
      for (size_t i = 0; i < slots.size(); ++i) *slots[i] = w0[i].to(on_dev).detach().requires_grad_(true);
      train::RopeTables rope = train::rope_tables(plan.doc_positions(), mo.head_dim(), mo.rope_theta, dtype);
      rope = {rope.cos.to(dev), rope.sin.to(dev)};  // the tables are made on the CPU (float64 angles)
      const at::Tensor xl = plan.shard(x), dyl = plan.shard(dy);
      std::vector<double> fwd, bwd, att;
      at::Tensor y;
      for (int it = 0; it < o.timing.warmup + o.timing.iters; ++it) {
        for (auto* t : slots) t->mutable_grad() = at::Tensor();
        comm.barrier()->wait();  // every rank's previous step is done (its last mark was waited for)
        // Marks on this rank's stream, no device-wide sync inside the step: a sync in one
        // thread-rank would wait for the others' kernels on the shared GPU and leave it idle.
        StreamMarks marks(dev);
        std::vector<std::pair<size_t, size_t>> attention;  // (begin, end) marks of each CP call
        const size_t begin = marks.mark();
        at::Tensor q, k, v, a;
        AttentionOutput f;
        at::Tensor xin = xl.detach().requires_grad_(true);
        y = train::transformer_block(w, mo, xin, rope, [&](const at::Tensor& q_, const at::Tensor& k_,
                                                            const at::Tensor& v_) {
          q = q_, k = k_, v = v_;
          at::NoGradGuard no_grad;
          const size_t a0 = marks.mark();
          f = cp.forward(q.detach(), k.detach(), v.detach(), plan, mask);
          attention.emplace_back(a0, marks.mark());
          a = f.out.detach().requires_grad_(true);
          return a;
        });
        const size_t forward_end = marks.mark();
        y.backward(dyl);
        const size_t a0 = marks.mark();
        AttentionGrads g = cp.backward(a.grad(), q.detach(), k.detach(), v.detach(), f.out, f.lse, plan, mask);
        attention.emplace_back(a0, marks.mark());
        torch::autograd::backward({q, k, v}, {g.dq, g.dk, g.dv});
        const size_t end = marks.mark();
        const double tb = marks.ms(forward_end, end), tf = marks.ms(begin, forward_end);
        double t_att = 0;
        for (const auto& [from, to] : attention) t_att += marks.ms(from, to);
        if (it >= o.timing.warmup) fwd.push_back(tf), bwd.push_back(tb), att.push_back(t_att);
      }
      // Every rank's last timed step ends before any rank queues the copies below (on a shared
      // GPU they would run beside, and slow, another rank's last timed kernels).
      comm.barrier()->wait();
      // Outside the timing: the output in global order and the weight grads summed over ranks.
      const at::Tensor full = plan.unshard(y.detach().contiguous(), comm);
      std::vector<at::Tensor> g(slots.size());
      for (size_t i = 0; i < slots.size(); ++i) {
        const at::Tensor gi = slots[i]->grad();
        g[i] = gi.to(at::promote_types(gi.scalar_type(), at::kFloat)).contiguous();  // summed in >= float32
        comm.all_reduce(g[i])->wait();
      }
      std::lock_guard<std::mutex> lock(mu);
      res.fwd_ms = std::max(res.fwd_ms, median(fwd));
      res.bwd_ms = std::max(res.bwd_ms, median(bwd));
      res.attention_ms = std::max(res.attention_ms, median(att));
      if (comm.rank() == 0) res.out = full, grads = g;
    }, co);
    res.grads = grads;
    const double bytes = cuda ? double(at::accelerator::getDeviceStats(0).allocated_bytes[0].peak - base)
                              : rss.mib() * double(1 << 20);
    res.peak_mb_per_rank = bytes / p / double(1 << 20);
    return res;
  };

  std::vector<Row> rows;
  LayerRun ref;
  std::vector<int> ranks = o.ranks;
  ranks.erase(std::remove(ranks.begin(), ranks.end(), 1), ranks.end());
  ranks.insert(ranks.begin(), 1);
  for (int p : ranks) {
    LayerRun r = run(p);
    if (p == 1) ref = r;
    double grad_err = 0;
    for (size_t i = 0; i < r.grads.size(); ++i) grad_err = worst_error(grad_err, rel_err(r.grads[i], ref.grads[i]));
    const double ms = r.fwd_ms + r.bwd_ms, out_err = rel_err(r.out, ref.out);
    rows.push_back(cp_config_row(p == 1 ? "single" : o.strategy, p == 1 ? std::string("-") : o.layout, "causal",
                                 o.T, p, o.heads, o.kv_heads, mo.head_dim())
                       .add("dim", o.dim)
                       .add("dtype", o.dtype)
                       .add("device", o.device)
                       .add("fwd_ms", r.fwd_ms)
                       .add("bwd_ms", r.bwd_ms)
                       .add("attention_ms", r.attention_ms)
                       .add("tokens_per_s", double(o.T) / (ms * 1e-3))
                       .add("tokens_per_s_per_rank", double(o.T) / (ms * 1e-3) / p)
                       .add("peak_mb_per_rank", r.peak_mb_per_rank)
                       .add("out_rel_err", out_err)
                       .add("wgrad_rel_err", grad_err)
                       .add("wrong", int64_t(!(worst_error(out_err, grad_err) <= tolerance(dtype)))));
  }
  return rows;
}

}  // namespace longhaul::bench

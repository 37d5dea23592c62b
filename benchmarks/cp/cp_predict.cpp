#include "benchmarks/cp/cp_predict.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <map>
#include <tuple>

#include "attention/attention.h"
#include "attention/simulated.h"
#include "core/errors.h"
#include "parallel/context_parallel.h"
#include "parallel/kernel_rate.h"
#include "parallel/planner.h"
#include "parallel/rsa_cost.h"
#include "parallel/simulate.h"
#include "runtime/comm/local/communicator.h"

namespace longhaul::bench {
namespace {

// The CPU kernel's tiles (attention/cpu/entry.cpp's tile plan: 512 query × 128 key rows; narrow
// bands take smaller forward tiles): a tile with any visible pair costs its whole area, a partial
// one what its 64-row slices work, each trimmed to the rows and keys it sees (cpu/params.h).
constexpr int64_t kCpuTileQ = 512, kCpuTileK = 128, kCpuSliceRows = 64;

// Ring Self-Attention's rates on one thread: a compute-bound product (n = 1024), an in-place
// elementwise pass and the first touch of fresh memory (128 MiB each), all scaled by RSA's own
// measured / modelled time — one rank alone on n tokens (H·n² ≤ 2²⁶ scores), forward + backward
// after a warm-up — which covers what the three yardsticks miss (exp's cost, the products' thin
// shapes). Once per process and head shape and mask kind (a few seconds).
struct DenseRates {
  double flops_per_s, bytes_per_s, first_touch_bytes_per_s;
};
const DenseRates& nominal_dense_rates() {  // one thread (the caller sets it)
  static const DenseRates rates{measure_dense_gflops(1024, 1024, 1024) * 1e9, measure_memory_gbps() * 1e9,
                                measure_first_touch_gbps() * 1e9};
  return rates;
}

double rsa_seconds_alone(int64_t n, int64_t h, int64_t h_kv, int64_t d, const Mask& mask) {
  ContextParallel cp(local::create_world(1).front(), Options{Strategy::RingSelfAttention, Layout::Contiguous});
  const ShardPlan plan = ShardPlan::for_mask(n, mask, Layout::Contiguous, 1, 0);
  at::Tensor q = at::randn({n, h, d}), k = at::randn({n, h_kv, d}), v = at::randn({n, h_kv, d}), dout = at::randn({n, h, d});
  auto run = [&] {
    const AttentionOutput f = cp.forward(q, k, v, plan, mask);
    cp.backward(dout, q, k, v, f.out, f.lse, plan, mask);
  };
  run();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

DenseRates calibrated_dense_rates(const CpPredictionInput& in) {
  static std::map<std::tuple<int64_t, int64_t, int64_t, bool>, DenseRates> cache;
  const auto key = std::make_tuple(in.H, in.H_kv, in.D, in.mask.is_causal());
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  const DenseRates r = nominal_dense_rates();
  const int64_t n = std::min<int64_t>(in.T, std::max<int64_t>(64, int64_t(std::sqrt(double(1 << 26) / double(in.H))) / 64 * 64));
  const Mask mask = in.mask.is_causal() ? Mask::causal() : Mask::full();
  const DenseCost c = rsa_dense_cost(in.H, n, n, in.D, mask.is_causal(), 4);
  const double modelled = c.flops / r.flops_per_s + c.bytes / r.bytes_per_s + c.fresh_bytes / r.first_touch_bytes_per_s;
  const double slower = rsa_seconds_alone(n, in.H, in.H_kv, in.D, mask) / modelled;
  at::set_num_threads(saved);
  return cache[key] = {r.flops_per_s / slower, r.bytes_per_s / slower, r.first_touch_bytes_per_s / slower};
}

// A loaded rank's speed relative to one thread alone: the dense rates (measured alone, one
// thread) scaled like the kernel's.
double loaded_speed(const CpPredictionInput& in) {
  return (in.single_fwd_ms + in.single_bwd_ms) / (in.loaded_fwd_ms + in.loaded_bwd_ms);
}

// RSA's calibrated rates on a loaded rank.
DenseRates loaded_dense_rates(const CpPredictionInput& in) {
  const DenseRates r = calibrated_dense_rates(in);
  const double speed = loaded_speed(in);
  return {r.flops_per_s * speed, r.bytes_per_s * speed, r.first_touch_bytes_per_s * speed};
}

double planner_ms(const CpPredictionInput& in) {
  Problem pr;
  pr.T = in.T, pr.H = in.H, pr.H_kv = in.H_kv, pr.D = in.D, pr.P = in.P, pr.elem_bytes = in.elem_bytes;
  pr.mask = in.mask_name;
  pr.given_mask = in.mask;
  pr.only_strategy = in.strategy;
  pr.only_layout = in.layout;
  const double f_fwd = 4.0 * double(in.mask.area(0, in.T, 0, in.T)) * double(in.H) * double(in.D);
  pr.kernel_gflops = 3.5 * f_fwd / ((in.loaded_fwd_ms + in.loaded_bwd_ms) * 1e-3) / 1e9;
  if (in.strategy == Strategy::RingSelfAttention) {
    const DenseRates r = loaded_dense_rates(in);
    pr.dense_gflops = r.flops_per_s / 1e9;
    pr.memory_gbps = r.bytes_per_s / 1e9;
    pr.first_touch_gbps = r.first_touch_bytes_per_s / 1e9;
  }
  for (const auto& pred : plan_strategies(pr, network_preset("this-machine")))
    if (pred.strategy == in.strategy && pred.layout == in.layout) return pred.time_s * 1e3;
  return NAN;
}

// The row's schedule in the simulator on one host (every pair of ranks on `link`), the kernel's
// rates from its measured forward and backward times of one whole block that paid `fwd_area` and
// `bwd_area` (its tiles and, with s.kernel's setup tiles, its thread blocks' start-ups), shared
// by `sharers` ranks that run at once on one device: forward + backward of the slowest rank, ms.
double simulate_on_one_host(SimulationSetup s, const sim::Link& link, double fwd_area, double bwd_area, double fwd_ms,
                            double bwd_ms, int sharers) {
  s.network.ranks_per_node = s.P;
  s.network.intra = s.network.inter = link;
  const double flops_per_area = 4.0 * double(s.H) * double(s.D);
  s.kernel.forward_flops_per_s = flops_per_area * fwd_area / (fwd_ms * 1e-3) / sharers;
  s.kernel.backward_flops_per_s = 2.5 * flops_per_area * bwd_area / (bwd_ms * 1e-3) / sharers;
  s.kernel.per_call_s = 0;
  const Simulation sim = simulate(s);
  return (sim.forward_s + sim.backward_s) * 1e3;
}

SimulationSetup row_setup(Strategy strategy, Layout layout, const Mask& mask, int64_t t, int64_t h, int64_t h_kv,
                          int64_t d, int p, c10::ScalarType dtype) {
  SimulationSetup s;
  s.T = t, s.H = h, s.H_kv = h_kv, s.D = d, s.P = p;
  s.dtype = dtype;
  s.options.strategy = strategy;
  s.options.layout = layout;
  s.mask = mask;
  return s;
}

double simulated_ms(const CpPredictionInput& in) {
  SimulationSetup s = row_setup(in.strategy, in.layout, in.mask, in.T, in.H, in.H_kv, in.D, in.P,
                                in.elem_bytes == 8 ? c10::ScalarType::Double : c10::ScalarType::Float);
  s.options.ulysses_degree = in.ulysses_degree;
  s.kernel.tile_q = kCpuTileQ;
  s.kernel.tile_k = kCpuTileK;
  s.kernel.tiles_of_local_rows = true;
  s.kernel.partial_slice_rows = kCpuSliceRows;
  if (in.strategy == Strategy::RingSelfAttention) {
    const DenseRates r = loaded_dense_rates(in);
    s.kernel.dense_flops_per_s = r.flops_per_s;
    s.kernel.memory_bytes_per_s = r.bytes_per_s;
    s.kernel.first_touch_bytes_per_s = r.first_touch_bytes_per_s;
  }
  // One host: every pair shares memory at the measured copy rate; kernel rates from the loaded
  // baseline, on the tiled area the kernel actually pays.
  const double tiled =
      double(simulated::tiled_area(BlockView::self(in.T), in.mask, kCpuTileQ, kCpuTileK, true, kCpuSliceRows));
  return simulate_on_one_host(s, {kThisMachineLatencyS, kThisMachineBytesPerS}, tiled, tiled, in.loaded_fwd_ms,
                              in.loaded_bwd_ms, 1);
}

}  // namespace

double predict_gpu_emulation_ms(const GpuEmulationPredictionInput& in) {
  LH_CHECK(in.P >= 1 && in.single_fwd_ms > 0 && in.single_bwd_ms > 0 && in.copy_bytes_per_s > 0 &&
               in.copy_latency_s >= 0,
           "bench cp-gpu prediction: needs P >= 1, positive single-kernel times and copy rate, got P=", in.P,
           " fwd ", in.single_fwd_ms, " ms, bwd ", in.single_bwd_ms, " ms, copy ", in.copy_bytes_per_s, " B/s");
  SimulationSetup s = row_setup(in.strategy, in.layout, in.mask, in.T, in.H, in.H_kv, in.D, in.P, in.dtype);
  s.kernel.tile_q = kGpuTile;
  s.kernel.tile_k = kGpuTile;
  // Merges and other passes share the HBM too: the copy rate counts bytes once, a pass reads and writes.
  s.kernel.memory_bytes_per_s = 2 * in.copy_bytes_per_s / in.P;
  // The shards' kernels pay their thread blocks' start-ups as the single block paid its own.
  s.kernel.forward_setup_tiles = in.setup_tiles_fwd;
  s.kernel.backward_setup_tiles = in.setup_tiles_bwd;
  // What the whole block paid, forward (its query tiles' start-ups) and backward (its key tiles').
  auto paid = [&](double setup_tiles, bool of_keys) {
    const auto w = simulated::tiled_work(BlockView::self(in.T), in.mask, kGpuTile, kGpuTile, false, 0, of_keys);
    return double(w.area) + setup_tiles * double(kGpuTile) * double(w.working_rows);
  };
  return simulate_on_one_host(s, {in.copy_latency_s, in.copy_bytes_per_s / in.P},
                              paid(s.kernel.forward_setup_tiles, false), paid(s.kernel.backward_setup_tiles, true),
                              in.single_fwd_ms, in.single_bwd_ms, in.P);
}

CpPredictions predict_cp_row(const CpPredictionInput& in) {
  return {planner_ms(in), simulated_ms(in)};
}

}  // namespace longhaul::bench

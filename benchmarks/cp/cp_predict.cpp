#include "benchmarks/cp/cp_predict.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "attention/attention.h"
#include "attention/simulated.h"
#include "parallel/kernel_rate.h"
#include "parallel/planner.h"
#include "parallel/simulate.h"

namespace longhaul::bench {
namespace {

// The CPU kernel's tiles (attention/cpu/entry.cpp's tile plan: 512 query × 128 key rows; narrow
// bands take smaller forward tiles): a tile with any visible pair costs its whole area.
constexpr int64_t kCpuTileQ = 512, kCpuTileK = 128;

// Ring Self-Attention's rates on one thread, measured once per process (under a second): a
// compute-bound product (n = 1024) and an elementwise pass over fresh memory (128 MiB).
struct DenseRates {
  double flops_per_s, bytes_per_s;
};
const DenseRates& dense_rates() {
  static const DenseRates rates = [] {
    const int saved = at::get_num_threads();
    at::set_num_threads(1);
    DenseRates r{measure_dense_gflops(1024, 1024, 1024) * 1e9, measure_memory_gbps() * 1e9};
    at::set_num_threads(saved);
    return r;
  }();
  return rates;
}

// A loaded rank's speed relative to one thread alone: the dense rates (measured alone, one
// thread) scaled like the kernel's.
double loaded_speed(const CpPredictionInput& in) {
  return (in.single_fwd_ms + in.single_bwd_ms) / (in.loaded_fwd_ms + in.loaded_bwd_ms);
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
    pr.dense_gflops = dense_rates().flops_per_s / 1e9 * loaded_speed(in);
    pr.memory_gbps = dense_rates().bytes_per_s / 1e9 * loaded_speed(in);
  }
  for (const auto& pred : plan_strategies(pr, network_preset("this-machine")))
    if (pred.strategy == in.strategy && pred.layout == in.layout) return pred.time_s * 1e3;
  return NAN;
}

double simulated_ms(const CpPredictionInput& in) {
  SimulationSetup s;
  s.T = in.T, s.H = in.H, s.H_kv = in.H_kv, s.D = in.D, s.P = in.P;
  s.dtype = in.elem_bytes == 8 ? c10::ScalarType::Double : c10::ScalarType::Float;
  s.options.strategy = in.strategy;
  s.options.layout = in.layout;
  s.options.ulysses_degree = in.ulysses_degree;
  s.mask = in.mask;
  // One host: every pair shares memory at the measured copy rate.
  s.network.ranks_per_node = in.P;
  s.network.intra = {kThisMachineLatencyS, kThisMachineBytesPerS};
  s.network.inter = s.network.intra;
  // Kernel rates from the baseline, on the tiled area the kernel actually pays.
  const double tiled = double(simulated::tiled_area(BlockView::self(in.T), in.mask, kCpuTileQ, kCpuTileK));
  const double f_fwd = 4.0 * tiled * double(in.H) * double(in.D);
  s.kernel.forward_flops_per_s = f_fwd / (in.loaded_fwd_ms * 1e-3);
  s.kernel.backward_flops_per_s = 2.5 * f_fwd / (in.loaded_bwd_ms * 1e-3);
  s.kernel.per_call_s = 0;
  s.kernel.tile_q = kCpuTileQ;
  s.kernel.tile_k = kCpuTileK;
  if (in.strategy == Strategy::RingSelfAttention) {
    s.kernel.dense_flops_per_s = dense_rates().flops_per_s * loaded_speed(in);
    s.kernel.memory_bytes_per_s = dense_rates().bytes_per_s * loaded_speed(in);
  }
  const Simulation sim = simulate(s);
  return (sim.forward_s + sim.backward_s) * 1e3;
}

}  // namespace

CpPredictions predict_cp_row(const CpPredictionInput& in) {
  return {planner_ms(in), simulated_ms(in)};
}

}  // namespace longhaul::bench

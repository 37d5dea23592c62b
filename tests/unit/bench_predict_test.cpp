// `bench cp-gpu`'s prediction (P thread-ranks sharing one GPU, simulated): one rank is the single
// kernel itself; P ranks on a free network cost the single kernel times the layout's imbalance;
// a slow copy costs more, and the copy measurement itself runs on any device.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "attention/simulated.h"
#include "benchmarks/cp/cp_predict.h"
#include "benchmarks/cp/rank_copy.h"
#include "core/errors.h"
#include "parallel/shard_plan.h"

namespace longhaul::bench {
namespace {

GpuEmulationPredictionInput causal_input(Strategy s, int p) {
  GpuEmulationPredictionInput in;
  in.strategy = s, in.layout = Layout::Zigzag, in.mask = Mask::causal();
  in.T = 8192, in.H = 8, in.H_kv = 8, in.D = 64, in.P = p;
  in.single_fwd_ms = 2.0, in.single_bwd_ms = 5.0;
  in.copy_latency_s = 0, in.copy_bytes_per_s = 1e18;  // a free network
  return in;
}

TEST(GpuEmulationPrediction, OneRankIsTheSingleKernel) {  // (+ a merge at the free memory rate)
  for (Strategy s : {Strategy::Ring, Strategy::AllGatherKV, Strategy::TokenRing})
    EXPECT_NEAR(predict_gpu_emulation_ms(causal_input(s, 1)), 7.0, 1e-6) << to_string(s);
}

TEST(GpuEmulationPrediction, SharedGpuOnAFreeNetworkCostsTheImbalanceOnly) {
  for (int p : {2, 4}) {
    auto in = causal_input(Strategy::Ring, p);
    in.setup_tiles_fwd = in.setup_tiles_bwd = 0;  // the areas alone (start-ups: the next test)
    // The busiest rank's share of the 128-tiled area, against the even share.
    const ShardPlan plan = ShardPlan::for_mask(in.T, in.mask, in.layout, p, 0);
    double busiest = 0;
    for (int r = 0; r < p; ++r) {
      const at::Tensor pos = plan.positions(r);
      busiest = std::max(busiest, double(simulated::tiled_area(BlockView{pos, at::arange(in.T, at::kLong)}, in.mask,
                                                                  kGpuTile, kGpuTile)));
    }
    const double whole = double(simulated::tiled_area(BlockView::self(in.T), in.mask, kGpuTile, kGpuTile));
    const double predicted = predict_gpu_emulation_ms(in);
    EXPECT_GE(predicted, 7.0 * 0.99) << "P=" << p;  // never faster than the GPU alone
    // Zigzag's pieces are whole 128-row tiles here, so per-step tiles add nothing; merges are free.
    EXPECT_LE(predicted, 7.0 * busiest * p / whole * 1.02) << "P=" << p;
  }
}

TEST(GpuEmulationPrediction, ShardsPayTheirOwnThreadBlockStartUps) {
  // The single block paid its start-ups once over its rows; P ranks' ring steps each pay theirs
  // over the local rows, so the emulation costs more than with no start-up, more so at larger P.
  double last = 0;
  for (int p : {1, 2, 4}) {
    auto in = causal_input(Strategy::Ring, p);
    const double with = predict_gpu_emulation_ms(in);
    in.setup_tiles_fwd = in.setup_tiles_bwd = 0;
    const double without = predict_gpu_emulation_ms(in);
    if (p == 1) {
      EXPECT_NEAR(with, without, 1e-6);  // one rank: the single block itself
    } else {
      EXPECT_GT(with / without, last) << "P=" << p;
      last = with / without;
    }
  }
  EXPECT_GT(last, 1.0);
}

TEST(GpuEmulationPrediction, ASlowCopyIsExposed) {
  auto in = causal_input(Strategy::AllGatherKV, 4);
  const double fast = predict_gpu_emulation_ms(in);
  in.copy_bytes_per_s = 1e9;  // 8 MiB of K,V per rank: ms per transfer, longer than the kernel's share
  in.copy_latency_s = 20e-6;
  EXPECT_GT(predict_gpu_emulation_ms(in), fast + 5.0);
  in.copy_bytes_per_s = 0;
  EXPECT_THROW(predict_gpu_emulation_ms(in), InvalidArgument);
}

TEST(GpuEmulationPrediction, CopyBetweenThreadRanksIsMeasured) {
  const RankCopy c = measure_rank_copy(c10::Device(c10::kCPU), int64_t(16) << 20, 3);
  EXPECT_GT(c.latency_s, 0.0);
  EXPECT_LT(c.latency_s, 0.1);
  EXPECT_GT(c.bytes_per_s, 1e7);  // 16 MiB moved, not a 4-byte message again
  EXPECT_THROW(measure_rank_copy(c10::Device(c10::kCPU), 2), InvalidArgument);
}

}  // namespace
}  // namespace longhaul::bench

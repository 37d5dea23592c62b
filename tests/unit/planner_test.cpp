// The planner: its byte counts equal what the strategies measurably send (same model, checked on
// thread-ranks), infeasible strategies say why, and the pick follows the regime (TokenRing with
// H_kv = H on full-duplex links when communication matters; Ring under GQA).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/errors.h"
#include "parallel/context_parallel.h"
#include "parallel/bucket_planner.h"
#include "parallel/planner.h"
#include "parallel/rsa_cost.h"
#include "runtime/comm/local/communicator.h"

namespace longhaul {
namespace {

const Prediction& find(const std::vector<Prediction>& preds, Strategy s, Layout l, Strategy inner = Strategy::Ring) {
  for (const auto& p : preds)
    if (p.strategy == s && p.layout == l && p.inner == inner) return p;
  throw std::runtime_error("no prediction");
}

TEST(Planner, BytesEqualWhatTheStrategiesSend) {
  for (const std::string mask_name : {"causal", "causal_documents", "full"}) {
    Problem pr;
    pr.T = 1000, pr.H = 4, pr.H_kv = 2, pr.D = 16, pr.P = 4, pr.mask = mask_name;
    if (mask_name == "causal_documents") pr.cu_seqlens = {0, 100, 130, 610, 1000};
    const auto preds = plan_strategies(pr, network_preset("this-machine"));
    const Mask mask = mask_of(pr);
    for (Strategy s : {Strategy::Ring, Strategy::TokenRing, Strategy::AllGatherKV, Strategy::Ulysses, Strategy::Hybrid})
      for (Layout l : {Layout::Zigzag, Layout::Contiguous, Layout::Striped})
      for (Strategy inner : {Strategy::Ring, Strategy::TokenRing}) {
        if (s != Strategy::Hybrid && inner != Strategy::Ring) continue;  // hybrid alone has an inner strategy
        int64_t measured = 0;
        local::run_ranks(pr.P, [&](Communicator& comm) {
          std::optional<at::Tensor> cu;
          if (!pr.cu_seqlens.empty()) cu = at::tensor(pr.cu_seqlens, at::kLong);
          ShardPlan plan(pr.T, cu, l, pr.P, comm.rank());
          // this-machine: 2 ranks per node, so the planner's hybrid is 2 × (P/2) with a ring across.
          ContextParallel cp(comm.shared_from_this(), {.strategy = s,
                                                       .layout = l,
                                                       .ulysses_degree = s == Strategy::Hybrid ? 2 : 1,
                                                       .inner = inner});
          at::Tensor q = at::zeros({plan.local_rows(), pr.H, pr.D}), k = at::zeros({plan.local_rows(), pr.H_kv, pr.D});
          cp.forward(q, k, k, plan, mask);
          at::Tensor b = at::full({1}, cp.stats().bytes_sent_fwd, at::kLong);
          comm.all_reduce(b, ReduceOp::Max)->wait();
          if (comm.rank() == 0) measured = b.item<int64_t>();
        });
        EXPECT_EQ(find(preds, s, l, inner).bytes_fwd, measured)
            << to_string(s) << "/" << to_string(l) << "/" << to_string(inner) << "/" << mask_name;
      }
  }
}

// What each strategy computes: Ulysses every row of H/P heads (balanced in any layout), Ring Self-
// Attention its whole T/P × T score matrix (the mask saves it nothing), ring the plan's own area.
TEST(Planner, ComputeFollowsWhatEachStrategyComputes) {
  Problem pr;
  pr.T = 4096, pr.H = 8, pr.H_kv = 8, pr.D = 64, pr.P = 4, pr.mask = "causal";
  Network net = network_preset("nvlink");
  net.setup_tiles_fwd = net.setup_tiles_bwd = 0;  // the areas alone (start-ups: KernelStartUpsAreChargedOnGpuPresets)
  const auto preds = plan_strategies(pr, net);
  EXPECT_DOUBLE_EQ(find(preds, Strategy::Ulysses, Layout::Contiguous).compute_s,
                   find(preds, Strategy::Ulysses, Layout::Zigzag).compute_s);
  EXPECT_GT(find(preds, Strategy::Ring, Layout::Contiguous).compute_s,
            1.5 * find(preds, Strategy::Ring, Layout::Zigzag).compute_s);  // contiguous causal is imbalanced
  Problem full = pr;
  full.mask = "full";
  const auto full_preds = plan_strategies(full, net);
  // Ring Self-Attention: its products (at the kernel rate when no GEMM rate is given) and its
  // passes over the scores (at the preset's memory rate): more than ring computing the full mask.
  const DenseCost dense = rsa_dense_cost(pr.H, pr.T / pr.P, pr.T, pr.D, true, 4);
  const double rsa = find(preds, Strategy::RingSelfAttention, Layout::Zigzag).compute_s;
  EXPECT_DOUBLE_EQ(rsa, dense.flops / (pr.kernel_gflops * 1e9) + dense.bytes / network_preset("nvlink").device_memory_Bps);
  EXPECT_GT(rsa, find(full_preds, Strategy::Ring, Layout::Zigzag).compute_s);
  // Hybrid is rated for every layout and both inner strategies.
  for (Layout l : {Layout::Zigzag, Layout::Contiguous, Layout::Striped, Layout::Balanced})
    for (Strategy inner : {Strategy::Ring, Strategy::TokenRing})
      EXPECT_TRUE(find(preds, Strategy::Hybrid, l, inner).feasible) << to_string(l) << "/" << to_string(inner);
}

// The forward's merges of partial results are passes over memory at the preset's rate: ring pays
// one per step over its rows, all-gather one per side of its own keys, TokenRing one per returned
// row, Ulysses none; without a memory rate they are free.
TEST(Planner, MergesOfPartialResultsCostMemoryTraffic) {
  Problem pr;
  pr.T = 8192, pr.H = 8, pr.H_kv = 8, pr.D = 64, pr.P = 4, pr.elem_bytes = 2, pr.mask = "causal";
  pr.only_layout = Layout::Zigzag;
  Network net = network_preset("nvlink");
  const auto charged = plan_strategies(pr, net);
  net.device_memory_Bps = 0;
  const auto uncharged = plan_strategies(pr, net);
  auto extra = [&](Strategy s) {
    return find(charged, s, Layout::Zigzag).compute_s - find(uncharged, s, Layout::Zigzag).compute_s;
  };
  const double one_merge = 2048.0 * 8 * (64 * (8 + 2) + 12) / network_preset("nvlink").device_memory_Bps;
  EXPECT_NEAR(extra(Strategy::Ring), 3 * one_merge, 1e-9 * one_merge);
  EXPECT_NEAR(extra(Strategy::AllGatherKV), 2 * one_merge, 1e-9 * one_merge);
  EXPECT_GT(extra(Strategy::TokenRing), 0.0);
  EXPECT_LE(extra(Strategy::TokenRing), 3 * one_merge);
  EXPECT_EQ(extra(Strategy::Ulysses), 0.0);
}

// On a GPU preset every thread block of a kernel call pays its start-up: the planner charges it
// over the rows each strategy's calls work (the simulator's model), nothing on the CPU.
TEST(Planner, KernelStartUpsAreChargedOnGpuPresets) {
  Problem pr;
  pr.T = 8192, pr.H = 8, pr.H_kv = 8, pr.D = 64, pr.P = 4, pr.elem_bytes = 2, pr.mask = "causal";
  pr.only_layout = Layout::Zigzag;
  Network net = network_preset("nvlink");
  EXPECT_EQ(net.setup_tiles_fwd, 4.0);
  EXPECT_EQ(net.setup_tiles_bwd, 1.5);
  const auto charged = plan_strategies(pr, net);
  net.setup_tiles_fwd = net.setup_tiles_bwd = 0;
  const auto uncharged = plan_strategies(pr, net);
  auto extra = [&](Strategy s) {
    return find(charged, s, Layout::Zigzag).compute_s - find(uncharged, s, Layout::Zigzag).compute_s;
  };
  // Rows worked forward and backward → 4·H·D·128 FLOPs per row and start-up tile, at the kernel rate.
  auto startups = [&](double q_rows, double k_rows) {
    return 4.0 * 8 * 64 * 128 * (4.0 * q_rows + 2.5 * 1.5 * k_rows) / (pr.kernel_gflops * 1e9);
  };
  const double tl = 2048;
  EXPECT_NEAR(extra(Strategy::Ring), startups(4 * tl, 4 * tl), 1e-9 * extra(Strategy::Ring));
  EXPECT_NEAR(extra(Strategy::TokenRing), startups(4 * tl, 4 * tl), 1e-9 * extra(Strategy::TokenRing));
  EXPECT_NEAR(extra(Strategy::AllGatherKV), startups(3 * tl, 8192), 1e-9 * extra(Strategy::AllGatherKV));
  EXPECT_NEAR(extra(Strategy::Ulysses), startups(tl, tl), 1e-9 * extra(Strategy::Ulysses));
  EXPECT_EQ(extra(Strategy::RingSelfAttention), 0.0);  // plain products, no attention kernel
  // The CPU's measured rate already holds its kernel's overheads.
  EXPECT_EQ(network_preset("this-machine").setup_tiles_fwd, 0.0);
  EXPECT_EQ(network_preset("this-machine").setup_tiles_bwd, 0.0);
}

// A GPU preset carries its device memory: Ring Self-Attention's quadratic scores at 1M tokens do
// not fit an 80 GiB H100, and the planner says so instead of calling it feasible.
TEST(Planner, DeviceMemoryOfThePresetBoundsFeasibility) {
  const Network net = network_preset("nvlink");
  EXPECT_DOUBLE_EQ(net.device_memory_bytes, 80.0 * double(1 << 30));
  Problem pr;
  pr.T = 1 << 20, pr.H = 32, pr.H_kv = 8, pr.D = 128, pr.P = 8, pr.elem_bytes = 2, pr.mask = "causal";
  pr.memory_limit_bytes = net.device_memory_bytes;
  pr.only_layout = Layout::Zigzag;
  const auto preds = plan_strategies(pr, net);
  EXPECT_FALSE(find(preds, Strategy::RingSelfAttention, Layout::Zigzag).feasible);
  EXPECT_EQ(find(preds, Strategy::RingSelfAttention, Layout::Zigzag).note, "does not fit in memory");
  EXPECT_TRUE(find(preds, Strategy::Ring, Layout::Zigzag).feasible);
}

TEST(Planner, InfeasibleStrategiesSayWhy) {
  Problem pr;
  pr.T = 4096, pr.H = 6, pr.H_kv = 6, pr.D = 64, pr.P = 4, pr.mask = "causal_window", pr.window = 256;
  pr.memory_limit_bytes = 64.0 * (1 << 20);
  const auto preds = plan_strategies(pr, network_preset("infiniband"));
  EXPECT_FALSE(find(preds, Strategy::Ulysses, Layout::Zigzag).feasible);
  EXPECT_NE(find(preds, Strategy::Ulysses, Layout::Zigzag).note.find("H % P"), std::string::npos);
  EXPECT_FALSE(find(preds, Strategy::RingSelfAttention, Layout::Zigzag).feasible);
  EXPECT_TRUE(preds.front().feasible);
}

TEST(Planner, PickFollowsTheRegime) {
  Problem pr;
  pr.T = 24000, pr.H = 32, pr.D = 128, pr.P = 4, pr.elem_bytes = 2, pr.kernel_gflops = 40000;
  pr.H_kv = 32;  // no GQA, full-duplex PCIe, communication-bound: both directions pay off
  EXPECT_EQ(plan_strategies(pr, network_preset("pcie")).front().strategy, Strategy::TokenRing);
  pr.H_kv = 8;  // GQA 4:1: K,V are a quarter of Q's size, the ring moves less
  EXPECT_EQ(plan_strategies(pr, network_preset("pcie")).front().strategy, Strategy::Ring);
  // Zigzag (or striped) balances causal work; contiguous is predicted slower.
  const auto preds = plan_strategies(pr, network_preset("pcie"));
  EXPECT_LT(find(preds, Strategy::Ring, Layout::Zigzag).time_s, find(preds, Strategy::Ring, Layout::Contiguous).time_s);
}

// The CP degree per DD bucket: data parallel while every group has a sequence, wider groups for
// the buckets with fewer sequences than ranks, always a feasible degree; the table is pinned.
TEST(BucketPlanner, DegreePerBucketIsPinnedAndFeasible) {
  BucketProblem bp;
  bp.world = 8;
  bp.tokens_per_step = 65536;
  bp.min_log2 = 10, bp.max_log2 = 16;
  bp.H = 32, bp.H_kv = 8, bp.D = 128, bp.elem_bytes = 2;
  bp.kernel_gflops = 400e3;  // an H100-class rate, GFLOP/s
  const auto table = plan_bucket_degrees(bp, network_preset("nvlink"));
  std::vector<int> degrees;
  for (const auto& b : table) {
    degrees.push_back(b.degree);
    const auto& chosen = *std::find_if(b.options.begin(), b.options.end(), [&](const auto& o) { return o.degree == b.degree; });
    EXPECT_TRUE(chosen.feasible) << "bucket " << b.length;
    for (const auto& o : b.options)  // nothing feasible is more than 1% faster
      if (o.feasible) EXPECT_GE(o.attention_s, chosen.attention_s * 0.99) << "bucket " << b.length << " c=" << o.degree;
  }
  // 64 sequences of 1K .. 8 of 8K: one per rank at least, so data parallel; 4 of 16K, 2 of 32K and
  // 1 of 64K: groups of 2, 4 and 8 keep every rank busy.
  EXPECT_EQ(degrees, (std::vector<int>{1, 1, 1, 1, 2, 4, 8}));
  // Determinism: the same inputs give the same table.
  const auto again = plan_bucket_degrees(bp, network_preset("nvlink"));
  for (size_t i = 0; i < table.size(); ++i) EXPECT_EQ(again[i].degree, table[i].degree);
}

TEST(BucketPlanner, MemoryLimitWidensOrNamesTheBucket) {
  BucketProblem bp;
  bp.world = 4;
  bp.tokens_per_step = 1 << 20;
  bp.min_log2 = 20, bp.max_log2 = 20;
  bp.H = 32, bp.H_kv = 8, bp.D = 128, bp.elem_bytes = 2;
  bp.kernel_gflops = 400e3;
  bp.memory_limit_bytes = 8.0 * (1 << 30);
  try {
    plan_bucket_degrees(bp, network_preset("nvlink"));
    ADD_FAILURE() << "a bucket too large for 4 ranks of 8 GiB was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("bucket 2^20 (1048576 tokens): no CP degree of the 4 ranks fits"),
              std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ranks would be needed"), std::string::npos) << e.what();
  }
  bp.min_log2 = bp.max_log2 = 18;  // fits once spread over 4: the limit forces a wider degree
  const auto table = plan_bucket_degrees(bp, network_preset("nvlink"));
  EXPECT_EQ(table[0].degree, 4);
  EXPECT_FALSE(table[0].options[0].feasible);
}

}  // namespace
}  // namespace longhaul

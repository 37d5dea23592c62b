// The planner: its byte counts equal what the strategies measurably send (same model, checked on
// thread-ranks), infeasible strategies say why, and the pick follows the regime (TokenRing with
// H_kv = H on full-duplex links when communication matters; Ring under GQA).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "parallel/context_parallel.h"
#include "parallel/planner.h"
#include "runtime/comm/local/communicator.h"

namespace longhaul {
namespace {

const Prediction& find(const std::vector<Prediction>& preds, Strategy s, Layout l) {
  for (const auto& p : preds)
    if (p.strategy == s && p.layout == l) return p;
  throw std::runtime_error("no prediction");
}

TEST(Planner, BytesEqualWhatTheStrategiesSend) {
  for (const std::string mask_name : {"causal", "causal_documents", "full"}) {
    Problem pr;
    pr.T = 1000, pr.H = 4, pr.H_kv = 2, pr.D = 16, pr.P = 4, pr.mask = mask_name;
    if (mask_name == "causal_documents") pr.cu_seqlens = {0, 100, 130, 610, 1000};
    const auto preds = plan_strategies(pr, network_preset("this-machine"));
    const Mask mask = mask_of(pr);
    for (Strategy s : {Strategy::Ring, Strategy::TokenRing, Strategy::AllGatherKV, Strategy::Ulysses, Strategy::Hybrid}) {
      for (Layout l : {Layout::Zigzag, Layout::Contiguous, Layout::Striped}) {
        if (s == Strategy::Hybrid && l != Layout::Zigzag) continue;  // the planner rates hybrid for zigzag
        int64_t measured = 0;
        local::run_ranks(pr.P, [&](Communicator& comm) {
          std::optional<at::Tensor> cu;
          if (!pr.cu_seqlens.empty()) cu = at::tensor(pr.cu_seqlens, at::kLong);
          ShardPlan plan(pr.T, cu, l, pr.P, comm.rank());
          // this-machine: 2 ranks per node, so the planner's hybrid is 2 × (P/2) with a ring across.
          ContextParallel cp(comm.shared_from_this(),
                             {.strategy = s, .layout = l, .ulysses_degree = s == Strategy::Hybrid ? 2 : 1});
          at::Tensor q = at::zeros({plan.local_rows(), pr.H, pr.D}), k = at::zeros({plan.local_rows(), pr.H_kv, pr.D});
          cp.forward(q, k, k, plan, mask);
          at::Tensor b = at::full({1}, cp.stats().bytes_sent_fwd, at::kLong);
          comm.all_reduce(b, ReduceOp::Max)->wait();
          if (comm.rank() == 0) measured = b.item<int64_t>();
        });
        EXPECT_EQ(find(preds, s, l).bytes_fwd, measured) << to_string(s) << "/" << to_string(l) << "/" << mask_name;
      }
    }
  }
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

}  // namespace
}  // namespace longhaul

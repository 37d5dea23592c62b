// Context parallelism on CUDA shards: thread-ranks of the local backend share one GPU, each on a
// stream of its own, and every strategy × layout × mask in float64, float32 and bfloat16 must
// equal the float64 reference (forward out/lse, dq/dk/dv). Skipped, with the reason, without a
// CUDA device; the same checks on CPU shards run in tests/unit (cp_test.cpp).
#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <gtest/gtest.h>

#include "runtime/comm/local/communicator.h"
#include "tests/common/cp_checks.h"

namespace longhaul {
namespace {

int cuda_devices() {
  return at::hasCUDA() ? static_cast<int>(c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).deviceCount()) : 0;
}

struct CpCudaCase {
  Strategy strategy;
  int ranks;
  bool nccl_order = false;  // the thread-ranks under NCCL's matching and stream order
};

class CpCuda : public ::testing::TestWithParam<CpCudaCase> {};

TEST_P(CpCuda, EveryLayoutMaskAndDtypeMatchesTheReference) {
  if (cuda_devices() == 0) GTEST_SKIP() << "no CUDA device on this machine (torch sees none); CPU shards are in tests/unit";
  const CpCudaCase c = GetParam();
  CommOptions o;
  o.timeout = std::chrono::seconds(30);  // a hang fails in 30 s, within gpu_check.sh's step
  o.nccl_order = c.nccl_order;
  local::run_ranks(c.ranks, [&](Communicator& comm) {
    const c10::Device dev(c10::DeviceType::CUDA, 0);
    local::enter_device_rank(dev);  // a stream of its own per thread-rank
    testing::check_device_cases(comm, c.strategy, 301, dev);  // odd T: uneven shards
  }, o);
}

// A head dim the fused kernels pad (20 -> 24) in float32: a rank's own whole block comes back cut
// to packed rows, which all-gather keeps as its accumulator and merges into (a strided view of the
// padded output was refused there), and the ring merges the same way.
TEST(CpCudaPaddedHeadDim, WholeBlockOutputsMergeIntoAccumulators) {
  if (cuda_devices() == 0) GTEST_SKIP() << "no CUDA device on this machine (torch sees none); CPU shards are in tests/unit";
  CommOptions o;
  o.timeout = std::chrono::seconds(30);
  local::run_ranks(2, [&](Communicator& comm) {
    local::enter_device_rank(c10::Device(c10::DeviceType::CUDA, 0));
    for (Strategy s : {Strategy::AllGatherKV, Strategy::Ring})
      for (const char* mask : {"causal", "full"})
        testing::check_against_reference(comm, {s, Layout::Contiguous, mask, 301, 4, 2, 20, at::kFloat, 1,
                                                Strategy::Ring, c10::Device(c10::DeviceType::CUDA, 0)});
  }, o);
}

INSTANTIATE_TEST_SUITE_P(Strategies, CpCuda,
                         ::testing::Values(CpCudaCase{Strategy::RingSelfAttention, 2},
                                           CpCudaCase{Strategy::Ring, 2}, CpCudaCase{Strategy::Ring, 4},
                                           CpCudaCase{Strategy::AllGatherKV, 3}, CpCudaCase{Strategy::TokenRing, 2},
                                           CpCudaCase{Strategy::TokenRing, 4}, CpCudaCase{Strategy::Ulysses, 2},
                                           CpCudaCase{Strategy::Hybrid, 4}, CpCudaCase{Strategy::Ring, 4, true},
                                           CpCudaCase{Strategy::TokenRing, 3, true},
                                           CpCudaCase{Strategy::AllGatherKV, 2, true},
                                           CpCudaCase{Strategy::Ulysses, 2, true}, CpCudaCase{Strategy::Hybrid, 4, true}),
                         [](const auto& info) {
                           return std::string(to_string(info.param.strategy)) + "_P" + std::to_string(info.param.ranks) +
                                  (info.param.nccl_order ? "_NcclOrder" : "");
                         });

}  // namespace
}  // namespace longhaul

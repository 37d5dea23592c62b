// The CUDA adapter's routing table (plain C++, run everywhere): which kernel each piece group of a
// block goes to and how many kernel calls a block costs. A change that multiplies launches (one
// call per document, per zigzag half) fails here, GPU or not.
#include <gtest/gtest.h>

#include "attention/cuda/block_plan.h"
#include "attention/cuda/route_table.h"
#include "attention/mask.h"

namespace longhaul {
namespace {

using cuda::DTypeClass;
using cuda::Kernel;

std::vector<int64_t> range(int64_t b, int64_t e) {
  std::vector<int64_t> v;
  for (int64_t x = b; x < e; ++x) v.push_back(x);
  return v;
}

cuda::Route route(const Mask& m, const std::vector<int64_t>& qp, const std::vector<int64_t>& kp,
                  const cuda::RouteInputs& in) {
  const cuda::BlockPlan plan = cuda::plan_block(m.spec(), qp.data(), static_cast<int64_t>(qp.size()), kp.data(),
                                                static_cast<int64_t>(kp.size()));
  return cuda::route_block(plan, static_cast<int64_t>(qp.size()), static_cast<int64_t>(kp.size()), in);
}

bool only(const cuda::Route& r, Kernel k) {
  for (const auto& l : r.launches)
    if (l.kernel != k) return false;
  return !r.launches.empty();
}

// Rank `r` of a P-rank zigzag layout of t tokens: chunks r and 2P-1-r (of unequal sizes when 2P
// does not divide t).
std::vector<int64_t> zigzag(int64_t t, int64_t p, int64_t r) {
  auto bound = [&](int64_t c) { return c * t / (2 * p); };
  std::vector<int64_t> v = range(bound(r), bound(r + 1));
  for (int64_t x : range(bound(2 * p - 1 - r), bound(2 * p - r))) v.push_back(x);
  return v;
}

// Every ring step of a P-rank zigzag causal layout of t tokens: check(p, q rank, k rank, route,
// what it is).
template <typename Check>
void for_each_zigzag_step(int64_t t, std::initializer_list<int64_t> ps, const cuda::RouteInputs& in, Check check) {
  for (int64_t p : ps)
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = 0; j < p; ++j) {
        const cuda::Route r = route(Mask::causal(), zigzag(t, p, i), zigzag(t, p, j), in);
        check(p, i, j, r,
              "T=" + std::to_string(t) + " P=" + std::to_string(p) + " q rank " + std::to_string(i) + " k rank " +
                  std::to_string(j) + ": " + r.describe());
      }
}

const std::vector<int64_t> kDocs{0, 700, 1500, 1501, 2900, 4096};  // five documents, one of length 1

TEST(RouteTable, DocumentsRunAsOneRaggedCudnnCall) {
  const Mask m = Mask::causal().documents(kDocs);
  const cuda::RouteInputs in;  // bf16, sm90, cuDNN varlen usable
  const cuda::Route r = route(m, range(0, 4096), range(0, 4096), in);
  EXPECT_TRUE(only(r, Kernel::CudnnVarlen)) << r.describe();
  EXPECT_EQ(r.kernel_calls(), 1) << r.describe();
  // Documents never share a row: one layer, so the call's output is the block's (no merges).
  const std::vector<int64_t> all = range(0, 4096);
  const cuda::BlockPlan plan = cuda::plan_block(m.spec(), all.data(), 4096, all.data(), 4096);
  ASSERT_EQ(plan.groups.size(), 1u);
  EXPECT_EQ(plan.groups[0].pieces.size(), 5u);
  EXPECT_EQ(plan.groups[0].layer_begin.size(), 2u) << "documents were split into several merge layers";
  cuda::RouteInputs no_cudnn = in;
  no_cudnn.cudnn_varlen = false;  // an older cuDNN, or the probe disagreed
  const cuda::Route f = route(m, range(0, 4096), range(0, 4096), no_cudnn);
  EXPECT_TRUE(only(f, Kernel::FlashVarlen)) << f.describe();
  // The backward of a ragged cuDNN group runs on FlashAttention-2 (torch 2.11's ragged cuDNN
  // backward writes past its dQ accumulator on pieces longer than the head dim), one call as well;
  // on the cuDNN band graph where that route is on, one call too.
  const cuda::Route b = r.backward();
  EXPECT_TRUE(only(b, Kernel::FlashVarlen)) << b.describe();
  EXPECT_EQ(b.kernel_calls(), r.kernel_calls()) << b.describe();
  cuda::RouteInputs band = in;
  band.cudnn_band = true;
  const cuda::Route rb = route(m, range(0, 4096), range(0, 4096), band);
  EXPECT_TRUE(only(rb, Kernel::CudnnVarlen)) << rb.describe();
  EXPECT_TRUE(only(rb.backward(), Kernel::CudnnBand)) << rb.backward().describe();
  EXPECT_EQ(rb.backward().kernel_calls(), 1) << rb.backward().describe();
  band.cudnn_varlen = false;  // no ragged cuDNN: the band graph both ways
  const cuda::Route bb = route(m, range(0, 4096), range(0, 4096), band);
  EXPECT_TRUE(only(bb, Kernel::CudnnBand) && only(bb.backward(), Kernel::CudnnBand)) << bb.describe();
  EXPECT_EQ(f.kernel_calls(), 1) << f.describe();
  // float32: the memory-efficient kernel, one call per document.
  cuda::RouteInputs f32 = in;
  f32.dtype = DTypeClass::Float;
  const cuda::Route e = route(m, range(0, 4096), range(0, 4096), f32);
  EXPECT_TRUE(only(e, Kernel::EfficientPieces)) << e.describe();
  EXPECT_EQ(e.kernel_calls(), 5) << e.describe();
}

TEST(RouteTable, WholeCausalBlocksTakeDenseCudnnWhereSdpaWouldElseRagged) {
  const Mask m = Mask::causal();
  cuda::RouteInputs in;
  in.dense_cudnn_causal = true;
  const cuda::Route dense = route(m, range(0, 1000), range(0, 1000), in);
  EXPECT_TRUE(only(dense, Kernel::CudnnDense)) << dense.describe();
  in.mha = false;  // GQA: SDPA's dense cuDNN does not take it, the ragged call does
  const cuda::Route gqa = route(m, range(0, 1000), range(0, 1000), in);
  EXPECT_TRUE(only(gqa, Kernel::CudnnVarlen)) << gqa.describe();
  EXPECT_EQ(gqa.kernel_calls(), 1);
}

TEST(RouteTable, ZigzagShardPairsRunOnCudnnInAtMostTwoCalls) {
  for_each_zigzag_step(8192, {2, 4, 8}, {}, [](int64_t, int64_t, int64_t, const cuda::Route& r, const std::string& what) {
    EXPECT_TRUE(only(r, Kernel::CudnnVarlen)) << what;
    EXPECT_LE(r.kernel_calls(), 2) << what;
  });
}

// Where SDPA picks cuDNN for the pieces (MHA), a zigzag ring step runs on dense cuDNN per piece,
// its backward too: an off-diagonal step is one full rectangle (the shard's two halves joined),
// the diagonal step a full piece and two causal squares (one square for the last rank, whose
// chunks are adjacent); an odd length (chunks of unequal sizes) the same. Documents (many
// pieces) and GQA keep the one ragged call.
TEST(RouteTable, ZigzagRingStepsRunOnDenseCudnnPerPieceBothWays) {
  cuda::RouteInputs in;
  in.dense_cudnn_pieces = true;
  for (const int64_t t : {8192, 8191})
    for_each_zigzag_step(t, {2, 4, 8}, in,
                         [](int64_t p, int64_t i, int64_t j, const cuda::Route& r, const std::string& what) {
                           EXPECT_TRUE(only(r, Kernel::CudnnPieces)) << what;
                           EXPECT_TRUE(only(r.backward(), Kernel::CudnnPieces)) << what;
                           EXPECT_EQ(r.kernel_calls(), i == j && i != p - 1 ? 3 : 1) << what;
                         });
  const Mask m = Mask::causal();
  const cuda::Route docs = route(Mask::causal().documents(kDocs), range(0, 4096), range(0, 4096), in);
  EXPECT_TRUE(only(docs, Kernel::CudnnVarlen)) << docs.describe();
  cuda::RouteInputs gqa = in;
  gqa.mha = false;
  EXPECT_TRUE(only(route(m, zigzag(8192, 4, 2), zigzag(8192, 4, 1), gqa), Kernel::CudnnVarlen));
  in.dense_cudnn_pieces = false;  // SDPA would not pick cuDNN for some piece
  EXPECT_TRUE(only(route(m, zigzag(8192, 4, 2), zigzag(8192, 4, 1), in), Kernel::CudnnVarlen));
}

TEST(RouteTable, CausalWindowsUseTheKernelsWindowArguments) {
  const Mask m = Mask::causal().window(1023, 0);
  cuda::RouteInputs in;
  const cuda::Route r = route(m, range(0, 16384), range(0, 16384), in);
  EXPECT_TRUE(only(r, Kernel::FlashVarlen)) << r.describe();  // cuDNN takes no window offsets
  EXPECT_EQ(r.kernel_calls(), 1) << r.describe();
  in.dtype = DTypeClass::Float;  // float32: the memory-efficient kernel's window, not the math fallback
  const cuda::Route e = route(m, range(0, 16384), range(0, 16384), in);
  EXPECT_TRUE(only(e, Kernel::EfficientPieces)) << e.describe();
  EXPECT_EQ(e.kernel_calls(), 1) << e.describe();
  in.efficient_window = false;  // the probe found the kernel's window inexact
  EXPECT_TRUE(route(m, range(0, 16384), range(0, 16384), in).fallback());
}

// With the cuDNN band route on (LONGHAUL_CUDA_BAND=cudnn and its probe good), every group that
// FlashAttention-2 ran for its window offsets runs on it instead, in as many calls; what ragged
// cuDNN already takes (documents, square causal pieces) does not move.
TEST(RouteTable, WindowsAndBottomRightCausalPiecesTakeTheCudnnBandRouteWhenItIsOn) {
  cuda::RouteInputs off, on;
  on.cudnn_band = true;
  struct Block {
    std::string what;
    Mask mask;
    std::vector<int64_t> qp, kp;
  };
  const std::vector<Block> windowed{
      {"causal window 1024", Mask::causal().window(1023, 0), range(0, 16384), range(0, 16384)},
      {"two-sided window", Mask::full().window(64, 64), range(0, 4096), range(0, 4096)},
      {"sliding window family", masks::sliding_window(8192, 1000), range(0, 8192), range(0, 8192)},
      {"window over a ring step", Mask::causal().window(300, 0), range(1000, 1500), range(600, 1000)},
      {"causal, more keys than rows", Mask::causal(), range(100, 200), range(0, 200)},
  };
  for (const Block& b : windowed) {
    const cuda::Route f = route(b.mask, b.qp, b.kp, off), c = route(b.mask, b.qp, b.kp, on);
    EXPECT_TRUE(only(c, Kernel::CudnnBand)) << b.what << ": " << c.describe();
    EXPECT_EQ(c.kernel_calls(), f.kernel_calls()) << b.what << ": " << c.describe() << " vs " << f.describe();
    EXPECT_TRUE(only(f, Kernel::FlashVarlen)) << b.what << " (route off): " << f.describe();
  }
  const Mask docs = Mask::causal().documents(kDocs);
  EXPECT_TRUE(only(route(docs, range(0, 4096), range(0, 4096), on), Kernel::CudnnVarlen));
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_TRUE(only(route(Mask::causal(), zigzag(8192, 4, i), zigzag(8192, 4, 3 - i), on), Kernel::CudnnVarlen));
  cuda::RouteInputs f32 = on;  // float32 and float64 keep their own routes
  f32.dtype = DTypeClass::Float;
  EXPECT_TRUE(only(route(Mask::causal().window(1023, 0), range(0, 4096), range(0, 4096), f32),
                   Kernel::EfficientPieces));
  f32.dtype = DTypeClass::Double;
  EXPECT_TRUE(route(Mask::causal().window(1023, 0), range(0, 4096), range(0, 4096), f32).fallback());
}

// Every other kernel runs its own backward: only ragged cuDNN hands its backward over, to the
// cuDNN band graph where that route is on, else to FlashAttention-2.
TEST(RouteTable, OnlyRaggedCudnnHandsItsBackwardOver) {
  for (const bool band : {false, true}) {
    for (const Kernel k : {Kernel::CudnnDense, Kernel::CudnnPieces, Kernel::CudnnBand, Kernel::FlashVarlen,
                           Kernel::EfficientPieces, Kernel::Fallback})
      EXPECT_EQ(cuda::backward_kernel(k, band), k) << cuda::to_string(k) << (band ? ", band on" : "");
    EXPECT_EQ(cuda::backward_kernel(Kernel::CudnnVarlen, band), band ? Kernel::CudnnBand : Kernel::FlashVarlen);
  }
}

TEST(RouteTable, WhatNoFusedKernelExpressesFallsBack) {
  const Mask causal = Mask::causal();
  cuda::RouteInputs in;
  in.dtype = DTypeClass::Double;
  EXPECT_TRUE(route(causal, range(0, 512), range(0, 512), in).fallback());
  in = {};
  in.head_dim = 320;
  EXPECT_TRUE(route(causal, range(0, 512), range(0, 512), in).fallback());
  in = {};
  in.sm_major = 7;
  EXPECT_TRUE(route(causal, range(0, 512), range(0, 512), in).fallback());
  std::vector<int64_t> striped;  // rank 1 of 4, striped: every 4th token
  for (int64_t x = 1; x < 2048; x += 4) striped.push_back(x);
  in = {};
  EXPECT_TRUE(route(causal, striped, striped, in).fallback());
  in.dtype = DTypeClass::Float;  // a two-sided window: no float32 fused kernel takes it
  EXPECT_TRUE(route(Mask::full().window(64, 64), range(0, 1024), range(0, 1024), in).fallback());
}

}  // namespace
}  // namespace longhaul

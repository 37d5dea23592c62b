// The CUDA attention backend against the float64 reference on CPU. Skipped, with the reason, on a
// machine without a CUDA device.
//
// Inputs are rounded to the tested dtype first and the reference runs on the rounded values, so
// the comparison measures only the kernels' own arithmetic. Tolerances (max abs error over
// max(1, max |reference|)):
//   bfloat16: out 2e-2, lse 2e-3, grads 5e-2   (flash rounds P and dS to bf16: ~2^-8 relative)
//   float16:  out 4e-3, lse 1e-3, grads 1e-2   (~2^-11 relative)
//   float32:  1e-4 everywhere (memory-efficient kernel / float32 math path)
//   float64:  1e-9 everywhere (exact math path)
#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <vector>

#include "attention/attention.h"
#include "attention/cuda/cuda_attention.h"
#include "attention/cuda/route_cudnn.h"
#include "attention/cuda/route_cudnn_band.h"
#include "parallel/shard_plan.h"
#include "core/errors.h"

namespace longhaul {
namespace {

int cuda_devices() {
  return at::hasCUDA() ? static_cast<int>(c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).deviceCount()) : 0;
}

#define SKIP_WITHOUT_CUDA() \
  if (cuda_devices() == 0) GTEST_SKIP() << "no CUDA device on this machine (torch sees none); CPU paths are in tests/unit"

struct Tol {
  double out, lse, grad;
};
Tol tolerance(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return {2e-2, 2e-3, 5e-2};
    case at::kHalf: return {4e-3, 1e-3, 1e-2};
    case at::kFloat: return {1e-4, 1e-4, 1e-4};
    default: return {1e-9, 1e-9, 1e-9};
  }
}

// Max abs difference relative to max(1, max |ref|); infinities must match exactly.
double rel_err(const at::Tensor& got, const at::Tensor& ref) {
  at::Tensor g = got.cpu().to(at::kDouble), r = ref.cpu().to(at::kDouble);
  EXPECT_EQ(g.sizes(), r.sizes());
  EXPECT_FALSE(at::isnan(g).any().item<bool>()) << "NaN in the CUDA result";
  at::Tensor inf_r = at::isinf(r);
  EXPECT_TRUE(at::equal(inf_r, at::isinf(g))) << "infinities differ";
  at::Tensor fin = ~inf_r;
  if (!fin.any().item<bool>()) return 0;
  const double scale = std::max(1.0, r.masked_select(fin).abs().max().item<double>());
  return (g - r).masked_select(fin).abs().max().item<double>() / scale;
}

struct Case {
  int64_t tq, tk, h, hkv, d;
  BlockView view;
  Mask mask;
};

struct Inputs {
  at::Tensor q, k, v, dout;  // CPU, already rounded to the tested dtype, stored as that dtype
};

Inputs make_inputs(const Case& c, at::ScalarType dt, uint64_t seed = 7) {
  at::manual_seed(seed);
  auto r = [&](int64_t t, int64_t h) { return at::randn({t, h, c.d}, at::kDouble).to(dt); };
  return {r(c.tq, c.h), r(c.tk, c.hkv), r(c.tk, c.hkv), r(c.tq, c.h)};
}

at::Tensor cu(const at::Tensor& x) { return x.to(at::kCUDA); }

// Forward and backward of the CUDA backend against the reference, for one dtype.
void check_case(const Case& c, at::ScalarType dt) {
  SCOPED_TRACE(std::string("mask ") + c.mask.describe() + ", dtype " + c10::toString(dt));
  const Tol tol = tolerance(dt);
  const Inputs in = make_inputs(c, dt);
  auto d64 = [](const at::Tensor& x) { return x.to(at::kDouble); };
  const AttentionOutput ref = attention_forward(d64(in.q), d64(in.k), d64(in.v), c.view, c.mask, 0,
                                                AttentionBackend::Reference);
  const AttentionOutput got = attention_forward(cu(in.q), cu(in.k), cu(in.v), c.view, c.mask, 0,
                                                AttentionBackend::Cuda);
  EXPECT_EQ(got.out.scalar_type(), dt);
  EXPECT_EQ(got.lse.scalar_type(), dt == at::kDouble ? at::kDouble : at::kFloat);
  EXPECT_LE(rel_err(got.out, ref.out), tol.out);
  EXPECT_LE(rel_err(got.lse, ref.lse), tol.lse);

  // Backward from the global out/lse (this block is every key these queries see).
  const AttentionGrads gref = attention_backward(d64(in.dout), d64(in.q), d64(in.k), d64(in.v), ref.out, ref.lse,
                                                 c.view, c.mask, 0, AttentionBackend::Reference);
  const at::Tensor lse_dev = cu(ref.lse.to(dt == at::kDouble ? at::kDouble : at::kFloat));
  const AttentionGrads g = attention_backward(cu(in.dout), cu(in.q), cu(in.k), cu(in.v), cu(ref.out.to(dt)),
                                              lse_dev, c.view, c.mask, 0, AttentionBackend::Cuda);
  const auto acc = dt == at::kDouble ? at::kDouble : at::kFloat;
  EXPECT_EQ(g.dq.scalar_type(), acc);
  EXPECT_EQ(g.dk.sizes(), (at::IntArrayRef{c.tk, c.hkv, c.d}));
  EXPECT_LE(rel_err(g.dq, gref.dq), tol.grad);
  EXPECT_LE(rel_err(g.dk, gref.dk), tol.grad);
  EXPECT_LE(rel_err(g.dv, gref.dv), tol.grad);

  // The row-sum form (TokenRing) must agree too.
  const at::Tensor rs = cu(attention_row_sums(d64(in.dout), ref.out).to(acc));
  const AttentionGrads g2 = attention_backward({cu(in.dout), cu(in.q), cu(in.k), cu(in.v), lse_dev, at::Tensor(), rs},
                                                c.view, c.mask, 0, AttentionBackend::Cuda);
  EXPECT_LE(rel_err(g2.dq, gref.dq), tol.grad);
  EXPECT_LE(rel_err(g2.dk, gref.dk), tol.grad);
  EXPECT_LE(rel_err(g2.dv, gref.dv), tol.grad);
}

void check_all_dtypes(const Case& c) {
  for (auto dt : {at::kBFloat16, at::kHalf, at::kFloat, at::kDouble}) check_case(c, dt);
}

BlockView positions(std::vector<int64_t> q, std::vector<int64_t> k) {
  return {at::tensor(q, at::kLong), at::tensor(k, at::kLong)};
}
std::vector<int64_t> range(int64_t b, int64_t e) {
  std::vector<int64_t> r;
  for (int64_t i = b; i < e; ++i) r.push_back(i);
  return r;
}
std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(AttentionCuda, FullAndCausalSelf) {
  SKIP_WITHOUT_CUDA();
  check_all_dtypes({200, 200, 4, 4, 64, BlockView::self(200), Mask::full()});
  check_all_dtypes({200, 200, 4, 4, 64, BlockView::self(200), Mask::causal()});
}

// Whole square blocks at a size where ATen's SDPA picks cuDNN on Hopper: the CUDA path then runs
// cuDNN's fused kernels (forward and backward) instead of FlashAttention-2; either way the results
// must match the reference.
TEST(AttentionCuda, WholeBlocksOnTheKernelSdpaWouldPick) {
  SKIP_WITHOUT_CUDA();
  const int64_t t = 1024, h = 8, d = 128;
  for (bool causal : {true, false}) {
    const at::Tensor q = at::randn({t, h, d}, at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA));
    std::cout << "[ INFO     ] T=" << t << " H=" << h << " D=" << d << (causal ? " causal" : " full")
              << ": whole block on " << (cuda::prefers_cudnn(q, q, causal, 1.0 / std::sqrt(double(d))) ? "cuDNN" : "flash")
              << "\n";
    check_case({t, t, h, h, d, BlockView::self(t), causal ? Mask::causal() : Mask::full()}, at::kBFloat16);
    check_case({t, t, h, h, d, BlockView::self(t), causal ? Mask::causal() : Mask::full()}, at::kHalf);
  }
}

TEST(AttentionCuda, Documents) {
  SKIP_WITHOUT_CUDA();
  const Mask docs = Mask::causal().documents(std::vector<int64_t>{0, 37, 120, 120, 200});
  check_all_dtypes({200, 200, 4, 2, 64, BlockView::self(200), docs});
  check_all_dtypes({200, 200, 4, 2, 64, BlockView::self(200), Mask::full().documents(std::vector<int64_t>{0, 90, 200})});
}

TEST(AttentionCuda, Windows) {
  SKIP_WITHOUT_CUDA();
  check_all_dtypes({160, 160, 2, 2, 32, BlockView::self(160), Mask::full().window(16, 4)});
  check_all_dtypes({160, 160, 2, 2, 32, BlockView::self(160), Mask::causal().window(32, 0)});
  // A window at an offset block (ring step): the pair's offsets differ from the diagonal.
  check_all_dtypes({64, 96, 2, 1, 32, BlockView::contiguous(100, 64, 40, 96),
                    Mask::causal().documents(std::vector<int64_t>{0, 130, 300}).window(50, 0)});
}

TEST(AttentionCuda, GqaAndOddHeadDim) {
  SKIP_WITHOUT_CUDA();
  check_all_dtypes({96, 96, 8, 2, 40, BlockView::self(96), Mask::causal()});  // D padded to 48
  check_all_dtypes({96, 96, 6, 1, 72, BlockView::self(96), Mask::full()});    // MQA
}

TEST(AttentionCuda, BlockViewsAtOffsets) {
  SKIP_WITHOUT_CUDA();
  // Ring step: queries after keys, partly overlapping.
  check_all_dtypes({64, 100, 4, 2, 64, BlockView::contiguous(100, 64, 40, 100), Mask::causal()});
  // Zigzag shard of rank 0 of 4 over 256 tokens: chunks 0 and 7, with documents.
  const auto zz = concat(range(0, 32), range(224, 256));
  check_all_dtypes({64, 64, 4, 2, 64, positions(zz, zz), Mask::causal().documents(std::vector<int64_t>{0, 240, 256})});
  check_all_dtypes({64, 128, 4, 2, 64, positions(zz, concat(range(32, 64), concat(range(128, 192), range(192, 224)))),
                    Mask::causal()});
}

TEST(AttentionCuda, EmptyRowsAndBlocks) {
  SKIP_WITHOUT_CUDA();
  // Rows 50..59 see no key (causal, keys start at 60); the whole block is empty for the first.
  check_all_dtypes({40, 40, 2, 2, 32, BlockView::contiguous(0, 40, 60, 40), Mask::causal()});
  check_all_dtypes({50, 60, 2, 2, 32, BlockView::contiguous(50, 50, 60, 60), Mask::causal()});
  const Case c{40, 40, 2, 2, 32, BlockView::contiguous(0, 40, 60, 40), Mask::causal()};
  const Inputs in = make_inputs(c, at::kBFloat16);
  const AttentionOutput got = attention_forward(cu(in.q), cu(in.k), cu(in.v), c.view, c.mask, 0,
                                                AttentionBackend::Cuda);
  EXPECT_TRUE(at::equal(got.out.cpu(), at::zeros_like(in.q)));
  EXPECT_TRUE((got.lse.cpu() == -std::numeric_limits<float>::infinity()).all().item<bool>());
}

// Every (query shard, key shard) pair of a zigzag plan over 4 ranks with a causal window — the
// blocks a ring step computes — and the merge over all key shards of each rank's queries.
TEST(AttentionCuda, ZigzagShardPairsWithWindowAndTheirMerge) {
  SKIP_WITHOUT_CUDA();
  const int64_t T = 301, P = 4;
  const Mask mask = Mask::causal().window(46, 0);
  std::vector<at::Tensor> pos;
  for (int r = 0; r < P; ++r) pos.push_back(ShardPlan(T, std::nullopt, Layout::Zigzag, P, r, 8).positions(r));
  for (int r = 0; r < P; ++r)
    for (int o = 0; o < P; ++o) {
      SCOPED_TRACE(detail::str_cat("queries of rank ", r, ", keys of rank ", o));
      check_case({pos[r].numel(), pos[o].numel(), 4, 2, 64, BlockView{pos[r], pos[o]}, mask}, at::kBFloat16);
    }
  const Case whole{T, T, 4, 2, 64, BlockView::self(T), mask};
  const Inputs in = make_inputs(whole, at::kBFloat16);
  auto d64 = [](const at::Tensor& x) { return x.to(at::kDouble); };
  const AttentionOutput ref = attention_forward(d64(in.q), d64(in.k), d64(in.v), whole.view, mask, 0,
                                                AttentionBackend::Reference);
  for (int r = 0; r < P; ++r) {
    SCOPED_TRACE(detail::str_cat("merged rows of rank ", r));
    const at::Tensor q = cu(in.q.index_select(0, pos[r]));
    at::Tensor out_acc = at::zeros({q.size(0), 4, 64}, q.options().dtype(at::kFloat));
    at::Tensor lse_acc = at::full({4, q.size(0)}, -std::numeric_limits<float>::infinity(), out_acc.options());
    for (int o = 0; o < P; ++o) {
      const AttentionOutput part = attention_forward_partial(q, cu(in.k.index_select(0, pos[o])),
                                                             cu(in.v.index_select(0, pos[o])),
                                                             BlockView{pos[r], pos[o]}, mask, 0, AttentionBackend::Cuda);
      merge_into(out_acc, lse_acc, part.out, part.lse);
    }
    EXPECT_LE(rel_err(out_acc, ref.out.index_select(0, pos[r])), tolerance(at::kBFloat16).out);
    EXPECT_LE(rel_err(lse_acc, ref.lse.index_select(1, pos[r])), tolerance(at::kBFloat16).lse);
  }
}

// A zigzag ring's steps with as many KV heads as query heads: where SDPA picks cuDNN, each piece
// (one full rectangle off the diagonal; a full piece and two causal squares on it) runs on dense
// cuDNN, forward and backward, and every step matches the reference; an odd length too.
TEST(AttentionCuda, ZigzagRingStepsOnDenseCudnnPieces) {
  SKIP_WITHOUT_CUDA();
  const int64_t P = 4, h = 4, d = 128;
  const double scale = 1.0 / std::sqrt(double(d));
  for (const int64_t T : {2048, 2047}) {
    std::vector<at::Tensor> pos;
    for (int r = 0; r < P; ++r) pos.push_back(ShardPlan(T, std::nullopt, Layout::Zigzag, P, r, 8).positions(r));
    // Where SDPA picks cuDNN for every piece shape of the layout (even T): a chunk's causal square,
    // a chunk against a chunk or two, two chunks against one, and a whole full block (two against
    // two), no piece may be left to FlashAttention-2.
    const at::Tensor square = cu(at::zeros({T / (2 * P), h, d}, at::kBFloat16)),
                     wide = cu(at::zeros({T / P, h, d}, at::kBFloat16));
    const bool cudnn = T % (2 * P) == 0 && cuda::prefers_cudnn(square, square, true, scale) &&
                       cuda::prefers_cudnn(square, square, false, scale) &&
                       cuda::prefers_cudnn(square, wide, false, scale) &&
                       cuda::prefers_cudnn(wide, square, false, scale) && cuda::prefers_cudnn(wide, wide, false, scale);
    std::cout << "[ route    ] T " << T << ": every piece on dense cuDNN expected: " << (cudnn ? "yes" : "no")
              << " (bf16, H " << h << ", D " << d << ")\n";
    for (const Mask& mask : {Mask::causal(), Mask::full()})
      for (int r = 0; r < P; ++r)
        for (int o = 0; o < P; ++o) {
          SCOPED_TRACE(detail::str_cat("T ", T, ", ", mask.describe(), ", queries of rank ", r, ", keys of rank ", o));
          const BlockView view{pos[r], pos[o]};
          const at::Tensor q = cu(at::zeros({pos[r].numel(), h, d}, at::kBFloat16)),
                           k = cu(at::zeros({pos[o].numel(), h, d}, at::kBFloat16));
          const std::string route = cuda::route_summary(q, k, view, mask, scale);
          if (r == 1) std::cout << "[ route    ] " << mask.describe() << " q" << r << " k" << o << ": " << route << "\n";
          if (cudnn) {
            EXPECT_EQ(route.rfind("cudnn_", 0), 0u) << route;
            EXPECT_EQ(route.find("flash"), std::string::npos) << route;
          }
          check_case({pos[r].numel(), pos[o].numel(), h, h, d, view, mask}, at::kBFloat16);
        }
  }
}

// Every long-context mask family in every dtype, on a self block and on zigzag shard pairs (the
// blocks a balanced ring computes), whichever kernel the route table gives each piece group.
TEST(AttentionCuda, EveryFamilyEveryDtype) {
  SKIP_WITHOUT_CUDA();
  const int64_t t = 300;
  const std::vector<int64_t> docs{0, 37, 41, 120, 121, 250, 300};
  const auto zz0 = concat(range(0, 38), range(262, 300)), zz1 = concat(range(38, 75), range(225, 262));
  for (const auto& name : masks::family_names()) {
    const int64_t param = name == "prefix_lm_causal" ? 90 : name == "prefix_lm_document" ? 9
                          : name == "block_causal_document" ? 16 : 23;
    const Mask m = masks::make(name, t, masks::uses_documents(name) ? docs : std::vector<int64_t>{}, param, 7);
    SCOPED_TRACE("family " + name);
    check_all_dtypes({t, t, 4, 2, 64, BlockView::self(t), m});
    check_all_dtypes({76, 74, 4, 2, 64, positions(zz0, zz1), m});
    check_case({74, 76, 4, 2, 64, positions(zz1, zz0), m}, at::kBFloat16);
  }
}

// The fast routes at sizes where they engage, with the route printed: ragged cuDNN for documents
// and GQA causal blocks (when this torch/cuDNN runs it), the memory-efficient kernel's own window
// for float32 causal windows.
TEST(AttentionCuda, RaggedCudnnAndFloat32WindowsAtRealSizes) {
  SKIP_WITHOUT_CUDA();
  const int64_t t = 2048, d = 128;
  const Mask docs = Mask::causal().documents(std::vector<int64_t>{0, 300, 301, 1100, 2048});
  const Mask full_docs = Mask::full().documents(std::vector<int64_t>{0, 700, 2048});
  const Mask window = Mask::causal().window(255, 0);
  struct Row {
    Mask mask;
    int64_t hkv;
    at::ScalarType dt;
  };
  for (const Row& r : {Row{docs, 8, at::kBFloat16}, Row{docs, 2, at::kBFloat16}, Row{full_docs, 8, at::kHalf},
                       Row{Mask::causal(), 2, at::kBFloat16}, Row{window, 8, at::kFloat}, Row{window, 2, at::kFloat}}) {
    const at::Tensor q = at::zeros({t, 8, d}, at::TensorOptions().dtype(r.dt).device(at::kCUDA));
    const at::Tensor k = at::zeros({t, r.hkv, d}, q.options());
    std::string why;
    const bool ragged = r.dt != at::kFloat && cuda::cudnn_varlen_usable(q, k, &why);
    std::cout << "[ INFO     ] " << r.mask.describe() << " H 8:" << r.hkv << " " << r.dt << ": "
              << cuda::route_summary(q, k, BlockView::self(t), r.mask, 1.0 / std::sqrt(double(d)))
              << (r.dt != at::kFloat && !ragged ? " (ragged cuDNN off: " + why + ")" : "") << "\n";
    check_case({t, t, 8, r.hkv, d, BlockView::self(t), r.mask}, r.dt);
  }
}

// The cuDNN band route (cuDNN's graph API: window bounds and bottom-right causal per ragged piece),
// switched on for this test only: every block whose groups FlashAttention-2 runs by default (the
// documents' backward included), against the float64 reference. Its own suite, so a GPU run can keep it in a process of its own.
TEST(AttentionCudaBand, WindowsBottomRightCausalPiecesAndDocumentsAgainstTheReference) {
  SKIP_WITHOUT_CUDA();
  struct Env {
    Env() { setenv("LONGHAUL_CUDA_BAND", "cudnn", 1); }
    ~Env() { unsetenv("LONGHAUL_CUDA_BAND"); }
  } env;
  const at::Tensor q = at::zeros({256, 8, 128}, at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA));
  std::string why;
  if (!cuda::cudnn_band_usable(q, q, &why)) {
    if (why.find("no cudnn-frontend") != std::string::npos) GTEST_SKIP() << why;
    FAIL() << "the cuDNN band route is built but off: " << why;
  }
  const Mask window = Mask::causal().window(1023, 0);
  for (const auto& [mask, t] :
       {std::pair{window, int64_t{4096}}, std::pair{Mask::full().window(64, 64), int64_t{2048}}}) {
    const at::Tensor x = at::zeros({t, 8, 128}, q.options());
    std::cout << "[ INFO     ] " << mask.describe() << " T " << t << ": "
              << cuda::route_summary(x, x, BlockView::self(t), mask, 1.0 / std::sqrt(128.0)) << "\n";
  }
  // One-sided forms (causal windows, bottom-right causal pieces), what the route is for: cuDNN must
  // run every one of their groups itself.
  for (auto dt : {at::kBFloat16, at::kHalf}) {
    check_case({160, 160, 2, 2, 32, BlockView::self(160), Mask::causal().window(32, 0)}, dt);
    check_case({64, 96, 2, 1, 32, BlockView::contiguous(100, 64, 40, 96),
                Mask::causal().documents(std::vector<int64_t>{0, 130, 300}).window(50, 0)}, dt);
    // More keys than rows: a bottom-right causal piece.
    check_case({64, 100, 4, 2, 64, BlockView::contiguous(100, 64, 40, 100), Mask::causal()}, dt);
    check_case({2048, 2048, 8, 2, 128, BlockView::self(2048), window}, dt);
  }
  check_case({300, 300, 4, 2, 64, BlockView::self(300), masks::make("sliding_window_causal", 300, {}, 23, 7)},
             at::kBFloat16);
  const cuda::BandRouteCounts one_sided = cuda::cudnn_band_counts();
  std::cout << "[ INFO     ] cuDNN band calls, one-sided forms: " << one_sided.ran << " ran, " << one_sided.handed_back
            << " handed to FlashAttention-2\n";
  EXPECT_GT(one_sided.ran, 0);
  EXPECT_EQ(one_sided.handed_back, 0) << "cuDNN refused some shapes (their lines on stderr say which and why)";
  // Documents (full and causal, one of them a single token): ragged cuDNN's forward, or the band
  // graph's where ragged cuDNN is off, and the band graph's backward, on cuDNN itself.
  const std::vector<int64_t> docs{0, 100, 612, 613, 1200};
  for (const Mask& mask : {Mask::causal().documents(docs), Mask::full().documents(docs)}) {
    const at::Tensor x = at::zeros({1200, 8, 128}, q.options());
    std::cout << "[ INFO     ] " << mask.describe() << " T 1200: "
              << cuda::route_summary(x, x, BlockView::self(1200), mask, 1.0 / std::sqrt(128.0)) << "\n";
    for (auto dt : {at::kBFloat16, at::kHalf})
      for (const int64_t hkv : {8, 2}) check_case({1200, 1200, 8, hkv, 128, BlockView::self(1200), mask}, dt);
  }
  const cuda::BandRouteCounts with_docs = cuda::cudnn_band_counts();
  std::cout << "[ INFO     ] cuDNN band calls, documents: " << with_docs.ran - one_sided.ran << " ran, "
            << with_docs.handed_back - one_sided.handed_back << " handed to FlashAttention-2\n";
  EXPECT_GE(with_docs.ran - one_sided.ran, 8) << "every documents backward runs on the band graph";
  EXPECT_EQ(with_docs.handed_back, one_sided.handed_back)
      << "cuDNN refused a documents shape (its line on stderr says which and why)";
  // Two-sided bands: cuDNN may refuse them (the probe allows it, and FlashAttention-2 then runs
  // those groups); the results are exact either way.
  for (auto dt : {at::kBFloat16, at::kHalf})
    check_case({160, 160, 2, 2, 32, BlockView::self(160), Mask::full().window(16, 4)}, dt);
  for (const std::string name : {"sliding_window", "global_sliding_window"})
    check_case({300, 300, 4, 2, 64, BlockView::self(300), masks::make(name, 300, {}, 23, 7)}, at::kBFloat16);
  const cuda::BandRouteCounts all = cuda::cudnn_band_counts();
  std::cout << "[ INFO     ] cuDNN band calls, two-sided bands: " << all.ran - with_docs.ran << " ran, "
            << all.handed_back - with_docs.handed_back << " handed to FlashAttention-2\n";
}

// The float64 reference on CUDA tensors (what bench kernel's check at size runs on the GPU) equals
// the reference on the CPU: a few query rows against every key, forward and backward.
TEST(AttentionCuda, ReferenceOnTheGpuEqualsTheReferenceOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  const int64_t t = 301;
  at::manual_seed(5);
  const at::Tensor q = at::randn({t, 4, 16}, at::kDouble), k = at::randn({t, 2, 16}, at::kDouble),
                   v = at::randn({t, 2, 16}, at::kDouble), dout = at::randn({t, 4, 16}, at::kDouble);
  const at::Tensor rows = at::tensor(std::vector<int64_t>{0, 7, 150, 151, 300}, at::kLong);
  const BlockView view{rows, BlockView::self(t).k_pos};
  const std::vector<int64_t> docs{0, 100, 101, 250, t};
  for (const Mask& mask : {Mask::causal(), Mask::causal().documents(docs).window(40, 0), Mask::full().documents(docs)}) {
    auto run = [&](const c10::Device& dev) {
      const at::Tensor qr = q.index_select(0, rows).to(dev), dr = dout.index_select(0, rows).to(dev),
                       kd = k.to(dev), vd = v.to(dev);
      const AttentionOutput f = attention_forward(qr, kd, vd, view, mask, 0, AttentionBackend::Reference);
      const AttentionGrads g = attention_backward(dr, qr, kd, vd, f.out, f.lse, view, mask, 0,
                                                  AttentionBackend::Reference);
      return std::vector<at::Tensor>{f.out.cpu(), f.lse.cpu(), g.dq.cpu(), g.dk.cpu(), g.dv.cpu()};
    };
    const auto cpu = run(at::kCPU), gpu = run(c10::Device(c10::kCUDA, 0));
    for (size_t i = 0; i < cpu.size(); ++i)
      EXPECT_TRUE(at::allclose(gpu[i], cpu[i], 1e-12, 1e-12)) << mask.describe() << " output " << i;
  }
}

TEST(AttentionCuda, StripedFallback) {
  SKIP_WITHOUT_CUDA();
  std::vector<int64_t> q, k;
  for (int64_t t = 1; t < 256; t += 4) q.push_back(t);
  for (int64_t t = 2; t < 256; t += 4) k.push_back(t);
  check_all_dtypes({64, 64, 2, 1, 32, positions(q, k), Mask::causal()});
}

TEST(AttentionCuda, MergeOfSplitKeysEqualsUnsplit) {
  SKIP_WITHOUT_CUDA();
  for (auto dt : {at::kBFloat16, at::kHalf, at::kFloat}) {
    SCOPED_TRACE(c10::toString(dt));
    const Mask mask = Mask::causal().documents(std::vector<int64_t>{0, 70, 160});
    const Case whole{160, 160, 4, 2, 64, BlockView::self(160), mask};
    const Inputs in = make_inputs(whole, dt);
    const at::Tensor q = cu(in.q), k = cu(in.k), v = cu(in.v);
    const AttentionOutput full = attention_forward(q, k, v, whole.view, mask, 0, AttentionBackend::Cuda);
    // Keys [0, 100) then [100, 160): partials rounded once to the input dtype, merged in float32.
    const AttentionOutput a = attention_forward(q, k.narrow(0, 0, 100), v.narrow(0, 0, 100),
                                                BlockView::contiguous(0, 160, 0, 100), mask, 0, AttentionBackend::Cuda);
    const AttentionOutput b = attention_forward(q, k.narrow(0, 100, 60), v.narrow(0, 100, 60),
                                                BlockView::contiguous(0, 160, 100, 60), mask, 0, AttentionBackend::Cuda);
    at::Tensor out_acc = at::zeros({160, 4, 64}, q.options().dtype(at::kFloat));
    at::Tensor lse_acc = at::full({4, 160}, -std::numeric_limits<float>::infinity(), q.options().dtype(at::kFloat));
    merge_into(out_acc, lse_acc, a.out, a.lse);
    merge_into(out_acc, lse_acc, b.out, b.lse);
    const Tol tol = tolerance(dt);
    EXPECT_LE(rel_err(out_acc, full.out.to(at::kFloat)), 2 * tol.out);
    EXPECT_LE(rel_err(lse_acc, full.lse), tol.lse);
  }
}

TEST(AttentionCuda, MergeKernelEdgeCases) {
  SKIP_WITHOUT_CUDA();
  const float inf = std::numeric_limits<float>::infinity();
  auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  // Rows: both empty, only acc, only b, both finite. Odd D exercises the scalar path.
  for (int64_t d : {8, 5}) {
    at::Tensor out_acc = at::full({4, 1, d}, 2.0, opts), out_b = at::full({4, 1, d}, 4.0, opts);
    out_acc[0].zero_();
    out_b[0].zero_();
    out_acc[2].zero_();
    out_b[1].zero_();
    at::Tensor lse_acc = at::tensor({-inf, 1.f, -inf, 0.f}, opts).view({1, 4});
    at::Tensor lse_b = at::tensor({-inf, -inf, 3.f, 0.f}, opts).view({1, 4});
    merge_into(out_acc, lse_acc, out_b.to(at::kHalf), lse_b);
    const at::Tensor o = out_acc.cpu(), l = lse_acc.cpu();
    EXPECT_FALSE(at::isnan(o).any().item<bool>());
    EXPECT_EQ(l[0][0].item<float>(), -inf);
    EXPECT_FLOAT_EQ(l[0][1].item<float>(), 1.f);
    EXPECT_FLOAT_EQ(l[0][2].item<float>(), 3.f);
    EXPECT_NEAR(l[0][3].item<float>(), std::log(2.f), 1e-6);
    EXPECT_TRUE(at::equal(o[0], at::zeros({1, d})));
    EXPECT_TRUE(at::allclose(o[1], at::full({1, d}, 2.0)));
    EXPECT_TRUE(at::allclose(o[2], at::full({1, d}, 4.0)));
    EXPECT_TRUE(at::allclose(o[3], at::full({1, d}, 3.0)));
  }
}

}  // namespace
}  // namespace longhaul

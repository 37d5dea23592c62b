// Which kernel runs each piece group of a block plan, decided in plain C++ (no ATen) so the
// routing and its launch count are tested on every machine, GPU or not.
//
//   dtype      group (window offsets)                      kernel                      launches
//   fp16/bf16  whole square block, full or causal, MHA,    cuDNN dense                 1
//              SDPA itself would pick cuDNN
//   fp16/bf16  full, or causal with square pieces, at most  cuDNN dense per piece       1 per piece
//              2 pieces (a zigzag ring step), MHA, no         (row-range views, no copy),
//              documents (a graph per shape), head dim <=     forward and backward
//              128, SDPA would pick cuDNN for every piece
//   fp16/bf16  full, or causal with every piece square     cuDNN varlen (ragged)       1 per group
//              (top-left = bottom-right alignment), when     forward; its backward on
//              this torch/cuDNN runs it and is faster        the cuDNN band graph where
//              (probed and timed once)                       that route is on, else
//                                                            FlashAttention-2 varlen
//   fp16/bf16  any other window (bottom-right offsets),     cuDNN band (graph API)      1 per group
//              when LONGHAUL_CUDA_BAND=cudnn (or auto) and
//              it runs (probed once; auto: and is faster)
//   fp16/bf16  any other window (bottom-right offsets)     FlashAttention-2 varlen     1 per group
//   float32    full, causal or causal window (right 0)     memory-efficient per piece  1 per piece
//   anything   fragmented plan (striped), float64, D > 256, fallback (exact chunked    chunks
//              float32 with right offsets                  math, never T x T)
//
// A backward takes the route of its forward, TokenRing's too: the fused backward kernels read the
// forward's out only through the row sums D = Σ dO·O, so where only D travelled they are given an
// out made from it (attention_out_for_row_sums).
//
// Why: cuDNN is Hopper's fastest fused attention (about 1.7x FlashAttention-2 in torch on an
// H100 for causal 16K blocks), and its dense operator has a sound backward, which the ragged one
// lacks (below): a ring step's one or two large pieces run on it in both directions, many small
// pieces (documents) in one ragged call; ATen's cuDNN operators take no window offsets, its graph API
// (cudnn-frontend) does, per ragged piece, bottom-right aligned; FlashAttention-2 takes any
// bottom-right window; the memory-efficient kernel is the only fused float32 one. torch 2.11's
// ragged cuDNN backward sizes its dQ accumulator by the head dim instead of the longest piece and
// writes past it (route_cudnn.h), so that backward is never called: the band route's graph, which
// takes ragged pieces with or without a diagonal, runs it on cuDNN where that route is on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/cuda/block_plan.h"

namespace longhaul::cuda {

enum class Kernel { CudnnDense, CudnnPieces, CudnnVarlen, CudnnBand, FlashVarlen, EfficientPieces, Fallback };
const char* to_string(Kernel k);
// The kernel that runs the backward of a group whose forward ran on `forward`: the same one, but
// for ragged cuDNN, whose backward is the cuDNN band graph's where `cudnn_band` (that route is on
// and probed good) and FlashAttention-2 varlen's otherwise. Exact either way: every backward
// takes the block's out and lse, not the forward kernel's.
Kernel backward_kernel(Kernel forward, bool cudnn_band);

enum class DTypeClass { Half, Float, Double };  // Half: fp16 and bf16

struct RouteInputs {
  DTypeClass dtype = DTypeClass::Half;
  int64_t head_dim = 128;
  int sm_major = 9;
  bool mha = true;              // as many KV heads as query heads
  bool cudnn_varlen = true;     // this process's torch/cuDNN runs ragged cuDNN attention
  bool cudnn_band = false;      // the cuDNN band route is on (LONGHAUL_CUDA_BAND=cudnn/auto) and probed good
  bool dense_cudnn_full = false, dense_cudnn_causal = false;  // ATen's SDPA picks cuDNN here
  // ... and for every piece of the groups dense_pieces_candidate takes (MHA, no document mask,
  // head dim <= 128: decided by the adapter)
  bool dense_cudnn_pieces = false;
  bool efficient_window = true; // the memory-efficient kernel's window_size was probed exact
};

struct Launch {
  Kernel kernel;
  std::size_t group;   // index into BlockPlan::groups (unused for Fallback)
  int64_t launches;    // kernel calls this entry makes (chunks for the fallback: 1 here)
};

struct Route {
  std::vector<Launch> launches;  // one entry per group, or one Fallback entry for the block
  bool fallback() const { return launches.size() == 1 && launches[0].kernel == Kernel::Fallback; }
  int64_t kernel_calls() const;
  std::string describe() const;  // "cudnn_varlen x1, flash_varlen x1"
  bool cudnn_band = false;        // the band route was on when this route was made
  Route backward() const;         // the same launches, each on its backward_kernel
};

// tq, tk: the block's row counts (a whole-block piece covers both).
Route route_block(const BlockPlan& plan, int64_t tq, int64_t tk, const RouteInputs& in);

// The one piece of a plan that covers every q row and every key, if that is the whole plan.
const Piece* whole_block_piece(const BlockPlan& plan, int64_t tq, int64_t tk);
bool full_or_causal(const PieceGroup& g);
// A group the per-piece dense cuDNN route can take (MHA and SDPA's choice aside): full, or causal
// with square pieces (top-left and bottom-right causal agree), of at most kMaxDensePieces pieces.
constexpr std::size_t kMaxDensePieces = 2;  // a zigzag diagonal step's two causal halves
bool dense_pieces_candidate(const PieceGroup& g);

}  // namespace longhaul::cuda

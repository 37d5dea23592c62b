// The cuDNN band route (fp16/bf16): a piece group with window offsets that ATen's cuDNN operators
// cannot express (a causal window, a two-sided window, a causal piece with more keys than rows),
// and the backward of the ragged cuDNN route's groups (full or causal documents, which ATen's
// ragged cuDNN backward gets wrong), as one call of cuDNN's fused attention through its graph API
// (cudnn-frontend): ragged Q/K/V/O over the pieces, per-piece sequence lengths, the diagonal
// aligned bottom-right per piece and the group's left/right offsets as the band's bounds. That is the FlashAttention-2 varlen call's
// contract, on Hopper's faster kernel.
//
// Off unless LONGHAUL_CUDA_BAND asks for it: it replaces FlashAttention-2 by default only once a
// GPU run has shown it faster. When asked for, it is first run once per (device, dtype, padded
// head dim, head grouping) on a small band problem against FlashAttention-2, forward and backward;
// if it fails or disagrees the route stays off, with the reason printed, and FlashAttention-2 runs
// those groups. With `auto` it is then also timed against FlashAttention-2 on a causal window of
// 1024 over 8192 tokens and stays on only where it is faster (both times printed). The probe
// requires the causal forms (a causal window, a bottom-right causal piece) to run and agree; a
// two-sided band cuDNN refuses is allowed. A group shape cuDNN refuses (to build or to run) goes
// to FlashAttention-2, with one line on stderr per shape, instead of failing the step. A build
// without the cudnn-frontend headers leaves it out (cudnn_band_usable says so).
#pragma once

#include <string>

#include "attention/cuda/route_common.h"

namespace longhaul::cuda {

// LONGHAUL_CUDA_BAND: unset or `flash` (FlashAttention-2 runs the windows), `cudnn` (the band
// route where its probe passes), `auto` (where its probe passes and it is faster). Any other value
// is an error that names these.
enum class BandMode { Off, On, Auto };
BandMode parse_band_mode(const char* value);
BandMode band_mode();  // LONGHAUL_CUDA_BAND now (a probe's verdict holds for the process)
const char* band_mode_name(BandMode mode);  // "flash", "cudnn" or "auto", as the switch spells it

// Whether the band route is asked for (band_mode) and runs, and agrees with (and, for auto, is
// faster than) FlashAttention-2, for this dtype, padded head dim and head grouping on the current
// device. `why` names the reason when it does not.
bool cudnn_band_usable(const at::Tensor& q, const at::Tensor& k, std::string* why = nullptr);

// What the route did in this process: group calls (forward or backward) cuDNN ran, and those it
// handed to FlashAttention-2 because cuDNN refused their shape.
struct BandRouteCounts {
  int64_t ran = 0, handed_back = 0;
};
BandRouteCounts cudnn_band_counts();

// One group's graph shape, as the route would build it (pieces and longest sides are rounded up
// to powers of two there too).
struct BandGraphShape {
  bool bf16 = true;
  int64_t pieces = 1, heads = 8, kv_heads = 8, head_dim = 128, max_q = 1024, max_kv = 1024;
  int64_t left = -1, right = 0;  // FlashAttention-2's bottom-right offsets, -1 = unbounded
  bool backward = false;
};
// cudnn-frontend's own validation of that graph (its support surface: layouts, ragged offsets,
// padding mask, band bounds and alignment, for this cuDNN's version) for the target compute
// capability sm_version, with no device needed: "" when valid, else the reason.
std::string validate_band_graph(const BandGraphShape& shape, int sm_version);

namespace routes {

// One cuDNN call over the pieces of a group (any window offsets): out [rows, H, Dp] in the input
// dtype and the fixed-up lse [H, rows] of the group's q rows (FlashAttention-2's, if cuDNN refuses
// the shape).
GroupOutput cudnn_band_forward_pieces(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v, double scale);
// lse: [H, T] float32 in ATen's convention (+inf on rows that see no key); adds the group's
// gradients into acc.
void cudnn_band_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                               GradAcc& acc);

}  // namespace routes
}  // namespace longhaul::cuda

// Exact attention in plain ATen ops on the inputs' device, in query-row chunks: the CUDA backend's
// exact path (route_table.h's Fallback: float64, fragmented/striped blocks, float32 windows the
// memory-efficient kernel cannot take, head dim > 256, the backward from row sums alone). Device
// agnostic, so its arithmetic and its chunking are tested on CPU tensors on every machine.
//
// Each chunk of query rows meets only the key rows between its rows' first and last visible key
// (where the keys' positions ascend: contiguous, zigzag and striped shards), so a window or a
// document costs about its own area, never T × T. Chunks grow while the [H, rows, keys] score
// buffer they compute is at most max_waste times the pairs their rows can see, or is small
// (small_buffer elements, where a kernel costs its launch more than its work), and at most
// score_budget bytes (ChunkLimits). The scale is folded into the queries and the scores are
// masked and exponentiated in place, so a chunk holds at most two score-sized buffers. K/V are
// never expanded for GQA (heads are grouped in the batched GEMMs). Computes in float32 (float64
// for float64 inputs).
#pragma once

#include <cstdint>
#include <vector>

#include "attention/attention.h"

namespace longhaul::chunked_math {

// How large a chunk may grow (the defaults are what the CUDA backend runs; tests shrink them to cut
// small blocks into many chunks).
struct ChunkLimits {
  int64_t score_budget = int64_t(256) << 20;  // bytes of one [H, rows, keys] buffer
  int64_t small_buffer = int64_t(1) << 22;    // elements: below it waste is not counted
  double max_waste = 1.5;                     // computed pairs / pairs the rows can see
};

// Query rows [r0, r0 + rows) against key rows [k0, k1); all_visible: every one of those pairs is
// visible (no mask is applied). Rows that see no key are in no chunk.
struct Chunk {
  int64_t r0, rows, k0, k1;
  bool all_visible;
};
// The chunks forward and backward cut a block into, for `heads` query heads in `acc` (the
// accumulation dtype). Depends on the positions and the mask only.
std::vector<Chunk> plan_chunks(const BlockView& view, const Mask& mask, int64_t heads, at::ScalarType acc,
                               const ChunkLimits& limits = {});

// out [Tq, H, D] in the accumulation dtype (float32, or float64), lse [H, Tq].
AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask, double scale, const ChunkLimits& limits = {});
// row_sums [H, Tq]; grads in the accumulation dtype.
AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& row_sums, const at::Tensor& lse, const BlockView& view, const Mask& mask,
                        double scale, const ChunkLimits& limits = {});

}  // namespace longhaul::chunked_math

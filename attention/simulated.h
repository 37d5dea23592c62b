// The attention kernels on shape-only (meta) tensors: what the simulator runs (parallel/simulate.h).
// Outputs have the shapes and dtypes the real kernels give and no data; the time the kernel would
// take — the masked area's FLOPs at the rank's KernelModel rates (core/virtual_clock.h), paid on
// whole tiles, plus each working tile's start-up and a fixed cost per call — is charged to the
// calling thread's virtual clock.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "attention/attention.h"

namespace longhaul::simulated {

// Visible (query, key) pairs of a block: exact for any mask and any rows (runs of consecutive
// positions are counted in O(1) each; other rows one by one).
int64_t block_area(const BlockView& view, const Mask& mask);
// The area a tiled kernel pays: every tile_q × tile_k tile with a visible pair counts whole. Rows
// in runs of consecutive positions are tiled from each run's start (wholly visible or masked
// parts settled at once: cost grows with the tiles on the mask's edges, not with the block);
// scattered rows (striped) are tiled in local order, a tile's positions taken as their range
// (conservative). Beyond a few thousand run pairs only the pairs whose positions can meet the
// mask's visible keys are tried (an index over the key runs or tiles), so documents cut into
// zigzag chunks at millions of tokens cost O(pairs that meet), not O(runs²). tile_q or
// tile_k <= 0: block_area. local_rows: tiles of consecutive local rows from the block's first
// row, whatever positions they hold (the CPU kernel's tiling, where a tile may span runs; a
// GPU path that calls its kernel once per run restarts tiles at each run instead); exact up to
// a few thousand run pairs, the per-run tiling beyond. slice_rows > 0 (with local_rows): a
// partial tile pays what the CPU kernel works of it, slices of that many query rows each trimmed
// to the rows that see the tile's keys and the keys they see, instead of its whole area.
int64_t tiled_area(const BlockView& view, const Mask& mask, int64_t tile_q, int64_t tile_k, bool local_rows = false,
                   int64_t slice_rows = 0);

// The rows of one side of a block (query rows, or key rows with of_keys) that lie in a tile
// holding a visible pair, under tiled_area's tiling: the work of the thread blocks a
// FlashAttention-style kernel launches (per head; parallel over query tiles forward, over key
// tiles backward), a run's short last tile counted by its rows, as when a varlen call packs the
// next run's rows into it. 0 when a tile size is <= 0.
int64_t working_rows(const BlockView& view, const Mask& mask, int64_t tile_q, int64_t tile_k, bool of_keys);

// Both at once, one pass over the block's pairs: tiled_area(view, mask, tile_q, tile_k,
// local_rows, slice_rows) and, when rows_of_keys is set, working_rows of that side (0 otherwise).
struct TiledWork {
  int64_t area = 0;
  int64_t working_rows = 0;
};
TiledWork tiled_work(const BlockView& view, const Mask& mask, int64_t tile_q, int64_t tile_k, bool local_rows,
                     int64_t slice_rows, std::optional<bool> rows_of_keys);

AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const BlockView& view,
                        const Mask& mask);
AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask);
// merge_into on shape-only tensors: a memory-bound pass, charged as the bytes it reads (both
// partial outputs and log-sum-exps) and writes (the accumulators) at the clock's memory rate.
void merge(const at::Tensor& out_acc, const at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b);

}  // namespace longhaul::simulated

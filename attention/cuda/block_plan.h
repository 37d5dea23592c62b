// How one (q rows × k rows) block maps onto FlashAttention-style varlen calls (no ATen here).
//
// Rows are split into runs: maximal stretches of consecutive rows whose global positions are
// consecutive (a contiguous shard is 1 run, a zigzag shard 2, a ring step anything). Each q run
// is cut by every mask slice it meets and paired with the part of each k run inside that slice's
// key range; inside such a pair the mask is "c_lo + a <= b <= a + c_hi" on relative rows a and
// keys b (the slice's band). A pair is trimmed to the rows and keys that see something, which
// makes it expressible as bottom-right aligned window offsets (flash's convention), and a causal
// pair is split into a diagonal piece (window 0 on the right) and a full piece so all causal work
// lands in at most two groups. Full pieces that form one rectangle (the same keys over adjacent q
// rows, or the same rows over adjacent keys: a zigzag shard's two halves) are joined into one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "attention/mask_spec.h"

namespace longhaul::cuda {

// One varlen sequence: q rows [q_row, q_row + m) against k rows [k_row, k_row + n), with
// flash's bottom-right window offsets (−1 = unbounded on that side).
struct Piece {
  int64_t q_row, m, k_row, n;
  int64_t left, right;
  int64_t q_run;  // the q run it came from (the first one, for joined full pieces)
};

// Pieces with equal window offsets, ordered by layer; within a layer q rows are disjoint, so
// each layer's outputs can be merged into the accumulators with one gather/merge/scatter.
struct PieceGroup {
  int64_t left, right;
  std::vector<Piece> pieces;
  std::vector<std::size_t> layer_begin;  // index of each layer's first piece, plus pieces.size()
};

// The most pieces one group holds: FlashAttention-2's varlen kernels put the batch (the pieces) in
// the grid's y dimension, at most 65535 blocks; a longer group is cut into several.
constexpr int64_t kMaxPiecesPerCall = 65535;

struct BlockPlan {
  bool fragmented = false;  // too many short runs (striped layouts): use the math fallback
  std::vector<PieceGroup> groups;
  int64_t num_pieces() const;
};

// q_pos/k_pos: global positions per row.
BlockPlan plan_block(const MaskSpec& spec, const int64_t* q_pos, int64_t tq, const int64_t* k_pos, int64_t tk);

}  // namespace longhaul::cuda

// ShardPlan: how a packed global sequence of T tokens is split over the P ranks of a CP group
// (docs/parallel.md). Shards are unpadded and may differ in length; local rows are in ascending
// global position. Every rank can compute every rank's rows, so strategies plan their
// communication (and skip empty steps) without exchanging metadata.
//   Contiguous: rank r holds one range (lengths differ by at most one).
//   Zigzag:     2P chunks, rank r holds chunks r and 2P−1−r (causal load balance). With documents
//               the zigzag is per document; a document too short to cut (fewer than
//               2P · min_chunk tokens) stays whole on the rank with the least work so far.
//   Striped:    token t on rank t mod P.
//   Balanced:   the coarsest cut whose largest rank area is within 2% of the mean: one range
//               per rank (a symmetric window), else mirrored pairs as zigzag (causal-like),
//               else P·c equal chunks that go, largest masked area first, to the rank with the
//               least area so far that still has room (a greedy min-heap, O(n log n)); c = 8
//               per rank, doubled while the largest rank area is more than 2% above the mean
//               and chunks stay >= min_chunk tokens (a few heavy rows, e.g. global tokens, need
//               small chunks to be spread). Fewer chunks: fewer, larger kernel calls and fewer
//               peers to fetch from. It guarantees every rank the same tokens (±c), not the
//               optimal split (NP-hard);
//               area_imbalance() reports what it reached. Needs the mask: ShardPlan::for_mask.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attention/mask.h"
#include "core/errors.h"
#include "runtime/comm/comm.h"

namespace longhaul {

enum class Layout { Contiguous, Zigzag, Striped, Balanced };
const char* to_string(Layout l);
Layout layout_from_string(const std::string& name);

class ShardPlan {
 public:
  // cu_seqlens: GLOBAL document offsets [0, ..., T] (int32/int64 CPU), or none (one document).
  ShardPlan(int64_t T, std::optional<at::Tensor> cu_seqlens, Layout layout, int P, int rank, int64_t min_chunk = 64);

  // The plan of `layout` for a mask: its documents (or `cu_seqlens` when given: the batch's
  // documents for RoPE positions under a mask that ignores them) for zigzag, its masked area for
  // balanced. What every caller with a mask at hand should use.
  static ShardPlan for_mask(int64_t T, const Mask& mask, Layout layout, int P, int rank, int64_t min_chunk = 64,
                            std::optional<at::Tensor> cu_seqlens = std::nullopt);

  // A plan with explicit rows per rank (a partition of [0, T), any order): the sub-plans of
  // composed strategies, e.g. hybrid's ring over Ulysses groups.
  static ShardPlan from_rows(int64_t T, std::vector<int64_t> cu_seqlens, Layout layout,
                             std::vector<std::vector<int64_t>> rows, int rank);

  int64_t T() const { return t_; }
  int P() const { return p_; }
  int rank() const { return rank_; }
  Layout layout() const { return layout_; }
  const std::vector<int64_t>& cu_seqlens() const { return cu_; }  // [0, T] without documents

  // Rows of this rank / of any rank (global positions, ascending): read-only views of one table
  // every copy of the plan shares (P simulated ranks of one process hold it once).
  at::Tensor positions() const { return positions(rank_); }
  at::Tensor positions(int rank) const;
  // Every rank's rows, in rank order (the layout of an all-gather over the group): [T] int64.
  const at::Tensor& positions_in_rank_order() const { return table_->all; }
  // Where rank r's rows start in positions_in_rank_order() (P + 1 entries: r in [0, P]).
  int64_t rank_offset(int rank) const {
    check_rank(rank, p_ + 1, "rank_offset");
    return table_->offset[rank];
  }
  int64_t local_rows(int rank) const {
    check_rank(rank, p_, "local_rows");
    return static_cast<int64_t>((*rows_)[rank].size());
  }
  int64_t local_rows() const { return local_rows(rank_); }
  const std::vector<int64_t>& rows_of(int rank) const {
    check_rank(rank, p_, "rows_of");
    return (*rows_)[rank];
  }
  // The row storage every copy of this plan shares (an identity for caches keyed by the plan).
  std::shared_ptr<const void> shared_rows() const { return rows_; }
  // The same plan seen from another rank, sharing the rows (P ranks of one process: one copy).
  ShardPlan with_rank(int rank) const;

  // Position of each local row inside its document (0-based): RoPE angles.
  at::Tensor doc_positions() const;
  // Offsets of the local runs of rows that belong to one document: [0, ..., local_rows].
  at::Tensor local_cu_seqlens() const;

  // Rows of a global [T, ...] tensor that belong to this rank.
  at::Tensor shard(const at::Tensor& global) const;
  // The inverse: the global tensor from every rank's shard (in rank order)...
  at::Tensor unshard(const std::vector<at::Tensor>& shards) const;
  // ...or from this rank's shard, gathering the others over the CP group (a collective).
  at::Tensor unshard(const at::Tensor& local, Communicator& comm) const;

  // The document mask that matches the plan's documents (Mask::full() without documents).
  Mask document_mask() const;
  // Masked area (visible pairs) of each rank's query rows against all keys.
  std::vector<int64_t> rank_areas(const Mask& mask) const;
  // Largest rank area / mean rank area (1 = perfectly balanced; 1 when nothing is visible).
  double area_imbalance(const Mask& mask) const;
  // A number that differs when T, layout, P, the documents or any rank's rows differ (agreement
  // checks; the rows' part is computed once per plan).
  uint64_t fingerprint() const;
  std::string describe() const;

 private:
  ShardPlan() = default;
  int64_t t_;
  int p_, rank_;
  Layout layout_;
  std::vector<int64_t> cu_;
  // Per rank, ascending; shared, so copies of a plan (autograd keeps one per call) are cheap.
  std::shared_ptr<const std::vector<std::vector<int64_t>>> rows_;
  // The same rows as one tensor in rank order, and each rank's offset into it.
  struct PositionTable {
    at::Tensor all;
    std::vector<int64_t> offset;
    uint64_t rows_hash = 0;  // of every rank's runs of consecutive rows
  };
  std::shared_ptr<const PositionTable> table_;
  void set_rows(std::vector<std::vector<int64_t>> rows);
  void check_rank(int rank, int bound, const char* what) const {
    LH_CHECK(rank >= 0 && rank < bound, "ShardPlan::", what, ": rank ", rank, " outside [0, ", bound, ")");
  }
};

}  // namespace longhaul

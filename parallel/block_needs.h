// Which ranks' keys each rank's queries can see under a mask (from the ShardPlan alone, so every
// rank computes the same table and no metadata travels). Strategies skip the transfers and the
// compute of rank pairs that see nothing, and send only the key rows someone sees. Conservative:
// a pair marked needed may still turn out empty row by row; one marked not needed is empty.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <utility>
#include <vector>

#include "attention/mask.h"
#include "parallel/shard_plan.h"

namespace longhaul {

class BlockNeeds {
 public:
  BlockNeeds(const ShardPlan& plan, const Mask& mask);
  // The needs of a plan under a mask, computed once and shared: by every rank of a simulation
  // (whose plans share their rows) and by every call of a run with the same plan and mask. Keyed by
  // the identity of the plan's row storage and the mask's fingerprint; a few recent entries kept.
  static std::shared_ptr<const BlockNeeds> shared(const ShardPlan& plan, const Mask& mask);
  // Rank qr's queries see some key of rank kr.
  bool needed(int qr, int kr) const { return needed_[qr * p_ + kr] != 0; }
  // Along a ring r → r+1 → …: the last hop t (1..P−1) at which rank (origin + t) still sees
  // some key row of `origin`; 0 when no other rank does.
  int last_hop(int origin) const { return last_hop_[origin]; }
  // The key rows of `origin` (indices into its local rows) some other rank sees: what has to
  // travel. Under a sliding window on a contiguous layout, only the halo.
  const std::vector<int64_t>& travelling_rows(int origin) const { return travelling_[origin]; }
  bool travels_whole(int origin) const { return whole_[origin]; }
  // The same rows as a tensor of local indices, and their global positions (int64, CPU).
  const at::Tensor& travelling_index(int origin) const { return travelling_index_[origin]; }
  const at::Tensor& travelling_positions(int origin) const { return travelling_positions_[origin]; }
  // A query whose visible keys are `keys` (Mask::spec().keys_of) sees some key of rank kr
  // (conservative like needed()).
  bool row_sees(const std::vector<PosInterval>& keys, int kr) const;
  // Of the query rows whose visible keys are `rows` (Mask::spec().keys_of_rows), the span
  // [first, last) outside which no row sees a key of rank kr: the rows a step against kr's keys
  // has to compute and merge (conservative like needed(); first == last: none).
  std::pair<int64_t, int64_t> rows_seeing(const RowKeys& rows, int kr) const;

 private:
  // Per rank: sorted, disjoint ranges of positions covering the rows it holds (its runs of
  // consecutive positions; neighbouring runs merged when there are more than kMaxRanges).
  std::vector<std::vector<RowRange>> ranges_;
  int p_;
  std::vector<char> needed_;
  std::vector<int> last_hop_;
  std::vector<std::vector<int64_t>> travelling_;
  std::vector<char> whole_;
  std::vector<at::Tensor> travelling_index_, travelling_positions_;
};

}  // namespace longhaul

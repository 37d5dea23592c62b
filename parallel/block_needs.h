// Which ranks' keys each rank's queries can see under a mask (from the ShardPlan alone, so every
// rank computes the same table and no metadata travels). Strategies skip the transfers and the
// compute of rank pairs that see nothing. Conservative: a pair marked needed may still turn out
// empty row by row; a pair marked not needed is certainly empty.
#pragma once

#include <map>
#include <vector>

#include "attention/mask.h"
#include "parallel/shard_plan.h"

namespace longhaul {

class BlockNeeds {
 public:
  BlockNeeds(const ShardPlan& plan, const Mask& mask);
  // Rank qr's queries see some key of rank kr.
  bool needed(int qr, int kr) const { return needed_[qr * p_ + kr] != 0; }
  // Along a ring r → r+1 → …: the last hop t (1..P−1) after which rank (origin + t) still
  // needs the block of `origin`; 0 when no other rank needs it.
  int last_hop(int origin) const { return last_hop_[origin]; }
  // A query at `pos` in document `doc` sees some key of rank kr (conservative like needed()).
  bool row_sees(int64_t pos, int64_t doc, int kr) const;

 private:
  const Mask* mask_;
  std::vector<std::map<int64_t, RowRange>> ranges_;  // per rank: document → positions held
  int p_;
  std::vector<char> needed_;
  std::vector<int> last_hop_;
};

}  // namespace longhaul

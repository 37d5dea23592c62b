#include "parallel/bytes_model.h"

#include <algorithm>

#include "parallel/block_needs.h"
#include "parallel/hybrid_layout.h"
#include "parallel/token_routes.h"
#include "core/errors.h"

namespace longhaul {

int64_t forward_bytes_formula(Strategy s, const ShardPlan& plan, const Mask& mask, int rank, int64_t h, int64_t h_kv,
                              int64_t d, int64_t elem_bytes, int ulysses_degree, Strategy inner) {
  const int p = plan.P();
  const int64_t row_bytes = 2 * h_kv * d * elem_bytes;  // one row of K and of V
  switch (s) {
    case Strategy::Ring: {
      // Step s (0..P−2): rank r holds the block of origin o = r − s and forwards it iff a later
      // rank on the ring still needs it.
      const auto shared = BlockNeeds::shared(plan, mask);
      const BlockNeeds& needs = *shared;
      int64_t rows = 0;
      for (int step = 0; step + 1 < p; ++step) {
        const int origin = (rank - step + p) % p;
        const int hop = (rank - origin + p) % p;
        if (needs.last_hop(origin) > hop) rows += static_cast<int64_t>(needs.travelling_rows(origin).size());
      }
      return rows * row_bytes;
    }
    case Strategy::AllGatherKV:
      // This rank's rows go to each of the P−1 others (T·(P−1)/P per rank when shards are equal).
      return plan.local_rows(rank) * (p - 1) * row_bytes;
    case Strategy::TokenRing: {
      // Q rows forwarded while a later hop needs them, plus (out, lse) of the rows that see this
      // rank's keys, back to their owner. lse is float32 (float64 for float64 inputs).
      const TokenRoutes routes(plan, mask);
      const int64_t q_row = h * d * elem_bytes, result_row = h * d * elem_bytes + h * (elem_bytes == 8 ? 8 : 4);
      int64_t total = 0;
      for (int step = 0; step + 1 < p; ++step)
        total += static_cast<int64_t>(routes.payload_rows((rank + step) % p, step + 1).size()) * q_row;
      for (int step = 1; step < p; ++step)
        total += static_cast<int64_t>(routes.result_rows((rank + step) % p, step).size()) * result_row;
      return total;
    }
    case Strategy::Ulysses: {
      // All-to-all of q and (replicated to at least P heads) k, v: the (P−1)/P of this rank's rows
      // that other ranks' heads need; back: out and lse of the other ranks' rows for this rank's heads.
      const int64_t hkv = h_kv % p == 0 ? h_kv : p;
      const int64_t tr = plan.local_rows(rank), others = plan.T() - tr;
      const int64_t lse_bytes = elem_bytes == 8 ? 8 : 4;
      return tr * (h + 2 * hkv) / p * (p - 1) * d * elem_bytes + others * (h / p) * (d * elem_bytes + lse_bytes);
    }
    case Strategy::RingSelfAttention: {
      // K, then V, passed on P−1 times (blocking, no skipping): the blocks of origins r, r−1, …,
      // r−P+2, i.e. every block but that of rank r+1.
      int64_t rows = 0;
      for (int step = 1; step < p; ++step) rows += plan.local_rows((rank - step + 1 + p) % p);
      return rows * row_bytes;
    }
    case Strategy::Hybrid: {
      // All-to-all inside the Ulysses group (as ulysses, over u members), the inner strategy over
      // the group plan with H/u heads, and out, lse back.
      const int u = ulysses_degree;
      const int64_t hkv = h_kv % u == 0 ? h_kv : u;
      const auto members = hybrid_member_rows(plan, u, rank);
      const int64_t tr = members[rank % u];
      int64_t group = 0;
      for (int64_t m : members) group += m;
      const int64_t lse_bytes = elem_bytes == 8 ? 8 : 4;
      const ShardPlan ring_plan = hybrid_group_plan(plan, u, rank);
      return tr * (h + 2 * hkv) / u * (u - 1) * d * elem_bytes +
             forward_bytes_formula(inner, ring_plan, mask, rank / u, h / u, hkv / u, d, elem_bytes) +
             (group - tr) * (h / u) * (d * elem_bytes + lse_bytes);
    }
    default:
      throw Unsupported(std::string("no byte formula for strategy ") + to_string(s));
  }
}

int64_t max_forward_bytes_formula(Strategy s, const ShardPlan& plan, const Mask& mask, int64_t h, int64_t h_kv,
                                  int64_t d, int64_t elem_bytes, int ulysses_degree, Strategy inner) {
  int64_t most = 0;
  for (int r = 0; r < plan.P(); ++r)
    most = std::max(most, forward_bytes_formula(s, plan, mask, r, h, h_kv, d, elem_bytes, ulysses_degree, inner));
  return most;
}

}  // namespace longhaul

// The Ulysses all-to-all over a group of ranks ("members"), shared by the ulysses and hybrid
// strategies: each member holds its own rows of all heads; after to_rows() each holds the rows of
// every member (member order) for 1/U of the heads; to_heads() is the inverse.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul {

// x [rows[me], Hx, ...] → [Σ rows, Hx/U, ...]. Adds the bytes this rank sends to `bytes`.
at::Tensor heads_to_rows(Communicator& group, const at::Tensor& x, const std::vector<int64_t>& rows, int64_t& bytes);
// y [Σ rows, Hx/U, ...] → [rows[me], Hx, ...].
at::Tensor rows_to_heads(Communicator& group, const at::Tensor& y, const std::vector<int64_t>& rows, int64_t& bytes);

// The same for per-head row statistics laid out [heads, rows] (lse): [H, rows[me]] ↔ [H/U, Σ rows].
at::Tensor stats_to_rows(Communicator& group, const at::Tensor& s, const std::vector<int64_t>& rows, int64_t& bytes);
at::Tensor stats_to_heads(Communicator& group, const at::Tensor& s, const std::vector<int64_t>& rows, int64_t& bytes);

// KV heads repeated `rep` times (see kv_replication), and the gradients of the repeats summed back.
at::Tensor replicate_kv(const at::Tensor& x, int64_t rep);
at::Tensor sum_kv_replicas(const at::Tensor& g, int64_t heads, int64_t rep);

// How many times each KV head is repeated so that KV heads split over `u` ranks: 1 when
// H_kv % u == 0, u / H_kv when u % H_kv == 0; otherwise an error listing the degrees that work.
int64_t kv_replication(int64_t h, int64_t h_kv, int u, const char* strategy);

}  // namespace longhaul

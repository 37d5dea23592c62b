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

// How many times each KV head is repeated so that KV heads split over `u` ranks: 1 when
// H_kv % u == 0, u / H_kv when u % H_kv == 0; otherwise an error listing the degrees that work.
int64_t kv_replication(int64_t h, int64_t h_kv, int u, const char* strategy);

}  // namespace longhaul

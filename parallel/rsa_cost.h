// What Ring Self-Attention's dense compute costs, for the planner: the same products and
// elementwise passes parallel/rsa.cpp meters on the simulator's clock (tests compare the two).
#pragma once

#include <cstdint>

namespace longhaul {

struct DenseCost {
  double flops = 0;  // matrix products
  double bytes = 0;  // read + written by the products and the elementwise passes
  double fresh_bytes = 0;  // newly allocated (the products' outputs; the passes work in place)
};

// Forward + backward on one rank: tl query rows against all t keys, h heads of size d, scores in
// an accumulate type of acc_bytes.
DenseCost rsa_dense_cost(int64_t h, int64_t tl, int64_t t, int64_t d, bool causal, int64_t acc_bytes);

}  // namespace longhaul

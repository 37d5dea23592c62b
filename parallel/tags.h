// Every point-to-point tag of the CP strategies, in one registry. Tag-matching backends (MPI,
// Gloo, local) use them to keep a step's messages apart; NCCL ignores tags and matches a pair's
// messages in posting order, which StepGroup makes the tag order (it posts a step's operations
// sorted by tag), so both ends of every pair post in the same order.
#pragma once

#include "runtime/comm/comm.h"

namespace longhaul {

enum class Tag : int {
  // Ring (parallel/ring.cpp): K,V blocks, the dK/dV accumulators that follow them, and the
  // accumulators going home to the block's owner.
  RingK = 1,
  RingV,
  RingDK,
  RingDV,
  RingDKHome,
  RingDVHome,
  // TokenRing (parallel/tokenring.cpp): travelling queries and what travels with them, partial
  // results and dQ partials returning to their owner.
  TokenQ,
  TokenDO,
  TokenStat,
  TokenOut,
  TokenLse,
  TokenDQ,
  // Ring Self-Attention (parallel/rsa.cpp): blocks circulating one step at a time.
  RsaBlock,
  kCount
};
static_assert(static_cast<int>(Tag::kCount) <= kMaxUserTag, "CP tags must stay below the reserved range");

constexpr int tag_value(Tag t) { return static_cast<int>(t); }

}  // namespace longhaul

// What a transfer between two thread-ranks of the local backend costs on one device: the
// "network" of `bench cp-gpu`'s emulation, measured in the same run as the rows it predicts.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

namespace longhaul::bench {

struct RankCopy {
  double latency_s = 0;     // half a round trip of a 4-byte message
  double bytes_per_s = 0;   // a `bytes` message alone, latency removed
};

// Ping-pong between two thread-ranks, each on its own stream of `device` (CPU: plain threads):
// `reps` round trips of each size after one warm-up.
RankCopy measure_rank_copy(const c10::Device& device, int64_t bytes, int reps = 5);

}  // namespace longhaul::bench

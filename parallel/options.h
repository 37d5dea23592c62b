// Strategies and options of context parallelism (docs/parallel.md).
#pragma once

#include <string>

#include "parallel/shard_plan.h"

namespace longhaul {

enum class Strategy { RingSelfAttention, Ring, AllGatherKV, TokenRing, Ulysses, Hybrid };
const char* to_string(Strategy s);  // rsa, ring, allgather, tokenring, ulysses, hybrid
Strategy strategy_from_string(const std::string& name);

struct Options {
  Strategy strategy = Strategy::Ring;
  Layout layout = Layout::Zigzag;
  int ulysses_degree = 1;
  Strategy inner = Strategy::Ring;
  bool overlap = true;  // post the next transfer before computing the current block
  double scale = 0;     // softmax scale; 0 means 1/sqrt(D) (negative or not finite: an error)
};

}  // namespace longhaul

// The CP degree of each dataset-decomposition bucket: for a world of W ranks and a step of
// `tokens_per_step` tokens in sequences of one power-of-two length L, the step runs as W/c groups
// of c ranks (c a divisor of W; c = 1 is pure data parallelism), each group taking its share of
// the step's B/L sequences one after another. Per rank the attention work of the step is about
// the same for every c (each group computes its sequences' masked area over c ranks), so c only
// pays off when (a) there are fewer sequences than groups (long buckets: ranks would idle), or
// (b) one sequence's activations do not fit a rank's memory. The planner predicts, per c, the
// step's attention time on the busiest rank (ceil(sequences / groups) × the cost model's
// forward+backward time of one sequence over c ranks, parallel/planner.h), plus the step's dense
// work on that rank's tokens, and takes the fastest feasible c, the smaller one on a tie within 1%. Deterministic: every rank computes the same
// table from the same inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/planner.h"

namespace longhaul {

struct BucketProblem {
  int world = 1;                  // W ranks
  int64_t tokens_per_step = 0;    // B, over the world
  int min_log2 = 6, max_log2 = 9; // buckets 2^m .. 2^M
  int64_t H = 0, H_kv = 0, D = 0, elem_bytes = 4;
  int layers = 1;                 // attention layers per step (scales time and memory)
  Strategy strategy = Strategy::Ring;  // inside a CP group (c > 1)
  Layout layout = Layout::Zigzag;
  double kernel_gflops = 100;     // per rank, forward + backward
  double memory_limit_bytes = 0;  // per rank, the attention's share; 0 = no limit
  // The rest of the step (projections, MLP, loss): FLOPs per token (forward + backward, all
  // layers) at dense_gflops per rank. The same per token for every c, but a rank idles with its
  // group when there are fewer sequences than groups. 0: attention only.
  double dense_flops_per_token = 0, dense_gflops = 0;
};

struct DegreeOption {
  int degree = 1;                 // c
  int64_t sequences_per_group = 0;
  double attention_s = 0;         // the step's attention time on the busiest rank
  double compute_s = 0, comm_s = 0;
  double dense_s = 0;             // the rest of the step on the busiest rank
  double step_s = 0;              // attention_s + dense_s: what the choice minimises
  int64_t memory_bytes = 0;       // per rank, one sequence's attention
  bool feasible = true;
  std::string note;               // why not feasible
};

struct BucketDegree {
  int log2_len = 0;
  int64_t length = 0;
  int64_t sequences = 0;          // B / L
  int degree = 1;                 // the chosen c
  std::vector<DegreeOption> options;  // every divisor of W, ascending
};

// One row per bucket. Throws InvalidArgument naming the bucket, the smallest degree that would
// fit and the limit when no degree fits the memory limit.
std::vector<BucketDegree> plan_bucket_degrees(const BucketProblem& problem, const Network& net);

}  // namespace longhaul

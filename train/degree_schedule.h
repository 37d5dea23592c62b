// The CP degree of every step: `--cp N` runs every step on groups of N ranks; `--cp auto` asks
// the bucket planner for each DD bucket's degree c (the fastest that fits the memory limit) from
// inputs every rank agrees on, then checks that every rank got the same table. For each degree in
// use the world is split once, at start, into W/c groups of c consecutive ranks, each with its
// ContextParallel; a step of length L runs on the groups of degree(L).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "parallel/bucket_planner.h"
#include "parallel/context_parallel.h"
#include "runtime/comm/comm.h"
#include "train/options.h"

namespace longhaul::train {

class DegreeSchedule {
 public:
  struct Group {
    int degree = 1;
    int groups = 1;  // W / degree
    int index = 0;   // this rank's group: world rank / degree
    CommPtr comm;  // this rank's group: the world split by world rank / degree
    std::unique_ptr<ContextParallel> cp;
  };

  // A collective over `world`. InvalidArgument before any step for a fixed degree that does not
  // divide W, a bucket no degree fits in the memory limit, or ranks whose tables differ.
  DegreeSchedule(const CommPtr& world, const TrainOptions& options);
  // The fixed degree's rule alone (nothing for --cp auto): `longhaul train` checks it before it
  // writes anything.
  static void check_fixed_degree(int cp, int world_size);

  // The degree of sequences of `length` tokens: its bucket's (the nearest bucket's outside them).
  int degree(int64_t length) const;
  Group& group_for(int64_t length) { return *groups_.at(degree(length)); }
  bool automatic() const { return !table_.empty(); }
  // --cp auto: the planner's table (every bucket, every degree); empty for a fixed degree.
  const std::vector<BucketDegree>& table() const { return table_; }
  // "64:1 128:1 256:2 512:4" (length:degree per bucket), or "4" for a fixed degree.
  std::string describe() const;
  // The planner inputs auto used (for the log): kernel and dense GFLOP/s, network.
  const BucketProblem& problem() const { return problem_; }

 private:
  int fixed_ = 0;
  int min_log2_ = 0;
  std::vector<int> degree_of_bucket_;  // auto: by log2 − min_log2
  std::vector<BucketDegree> table_;
  BucketProblem problem_;
  std::map<int, std::unique_ptr<Group>> groups_;
};

// The planner's problem for a training run of `world` ranks (rates measured when not given:
// callers that must agree pass the measured values to every rank).
BucketProblem bucket_problem(const TrainOptions& o, int world);

}  // namespace longhaul::train

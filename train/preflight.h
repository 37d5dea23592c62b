// Memory preflight: before the first step, a training run takes the heaviest steps it can meet
// once, on made-up tokens (forward, backward and the gradient all-reduce, no update), with the
// optimiser state already made, and measures each rank's peak memory. A short-first curriculum (DD's grow_p2) reaches its longest bucket only
// well into a cycle, so a step that does not fit would otherwise fail there, hours in; here it
// fails before step 1, naming the sequence length and CP degree. On the CPU each process runs it
// under a ceiling, its share of what its host may still give (train/host_share.h): on a host that
// overcommits, a step the RAM or the job's memory cgroup cannot hold then fails as an allocation,
// named, where it would otherwise be killed by the OOM killer.
//
// Every rank holds tokens_per_step / W tokens whatever the bucket and degree, so what grows with
// the length is attention's: buffers of the local shard (L / c tokens: ring and TokenRing blocks,
// Ulysses' heads of the whole sequence) and, for all-gather KV, of the whole sequence (L). The
// preflight therefore runs the longest length, and the one with the longest shard when that is
// another.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/batch.h"

namespace longhaul::train {

struct PreflightShape {
  int64_t seq_len = 0;
  int degree = 1;          // CP degree of steps of this length
  int64_t sequences = 0;   // sequences of one step over the world: tokens_per_step / seq_len
  int micro_batches = 1;   // passes a rank's share of the step is cut into (TrainOptions::micro_batches)
};

struct PreflightResult {
  PreflightShape shape;
  bool device_memory = false;  // peaks of the CUDA allocator (else the process's resident set)
  // The largest over the ranks: the peak during the step, and how much the step added to what was
  // held before it (the CPU: resident set, per process; CUDA: allocated bytes, per device).
  double peak_bytes = 0, step_bytes = 0;
  int busiest_rank = 0;          // whose step_bytes is largest
  // The least over the ranks: on the CPU what the host may still give (MemAvailable, or less under
  // a memory cgroup's limit: core/host_memory.h), on CUDA the device's free memory, before the step.
  double available_bytes = 0;
  // On the CPU, the least over the ranks of what a process was let add during the step (its share
  // of its host's available memory: train/host_share.h); 0 where no ceiling was set.
  double ceiling_bytes = 0;
  double seconds = 0;
};

// The shapes to run, from the lengths the run's steps can have (its non-empty buckets) and each
// length's degree: the longest, then the longest shard (L / c; the longer L on a tie) when that is
// another length. Empty for no lengths.
std::vector<PreflightShape> preflight_shapes(const std::vector<int64_t>& lengths,
                                             const std::function<int(int64_t)>& degree, int64_t tokens_per_step,
                                             int micro_batches = 1);

// A step's share of made-up tokens: `sequences` sequences of seq_len tokens, each one document,
// tokens drawn uniformly from [0, vocab) with `seed`, targets the next token inside the sequence.
data::Batch synthetic_batch(int64_t seq_len, int64_t sequences, int64_t vocab, uint64_t seed);

// "4096-token sequences at cp 2 (1 per step)"; "… (64 per step, 4 micro-batches)".
std::string describe(const PreflightShape& s);
// One line for the log: the shape, the peak and what the step added, the busiest rank, the memory
// available and the time.
std::string describe(const PreflightResult& r);
// The message of a preflight step that could not allocate on `rank`: the shape, torch's words
// (`what`), the ceiling the process ran under (`ceiling`: describe(HostShare), empty for none) and
// what to change.
std::string out_of_memory_message(const PreflightShape& s, int rank, const std::string& what,
                                  const std::string& ceiling = "");

}  // namespace longhaul::train

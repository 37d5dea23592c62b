// Memory preflight: before the first step, a training run takes the heaviest steps it can meet
// on made-up tokens and measures each rank's peak memory. A short-first curriculum (DD's grow_p2)
// reaches its longest bucket only well into a cycle, so a step that does not fit would otherwise
// fail there, hours in; here it fails before step 1, naming the sequence length and CP degree. On
// the CPU each process runs it under a ceiling, its share of what its host may still give
// (train/host_share.h): on a host that overcommits, a step the RAM or the job's memory cgroup
// cannot hold then fails as an allocation, named, where it would otherwise be killed by the OOM
// killer.
//
// Each shape runs kPreflightSteps steps as training runs them: forward, backward, the gradient
// all-reduce and an optimiser update that changes nothing (train/update_rehearsal.h), with the
// optimiser state already made. One step is not enough on the CPU: the heap keeps what a step frees
// (core/host_allocation.h), and where the next step's blocks fit in it depends on what came
// between (measured: one step 7.3 GiB against the run's 12.1 GiB; two 10.4 against 10.4). Even so
// the layout varies from run to run, and runs peaked up to 1.5x above two steps (headroom_warning),
// so on the CPU the training steps run under a ceiling too (train/run.cpp).
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
#include "train/host_share.h"

namespace longhaul::train {

// Steps the preflight runs per shape (see above).
inline constexpr int kPreflightSteps = 2;

struct PreflightShape {
  int64_t seq_len = 0;
  int degree = 1;          // CP degree of steps of this length
  int64_t sequences = 0;   // sequences of one step over the world: tokens_per_step / seq_len
  int micro_batches = 1;   // passes a rank's share of the step is cut into (TrainOptions::micro_batches)
};

struct PreflightResult {
  PreflightShape shape;
  bool device_memory = false;  // peaks of the CUDA allocator (else the process's resident set)
  // The largest over the ranks: the peak during the steps, and how much they added to what was
  // held before them (the CPU: resident set, per process; CUDA: allocated bytes, per device).
  double peak_bytes = 0, step_bytes = 0;
  int busiest_rank = 0;          // whose step_bytes is largest
  // The least over the ranks: on the CPU what the host may still give (MemAvailable, or less under
  // a memory cgroup's limit: core/host_memory.h), on CUDA the device's free memory, before the steps.
  double available_bytes = 0;
  // On the CPU, the least over the ranks of what a process was let add during the steps (its share
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
// One line for the log: the shape, the peak and what the steps added, the busiest rank, the memory
// available and the time.
std::string describe(const PreflightResult& r);
// The message of a preflight step that could not allocate on `rank`: the shape, torch's words
// (`what`), the ceiling the process ran under (`ceiling`: describe(HostShare), empty for none) and
// what to change.
std::string out_of_memory_message(const PreflightShape& s, int rank, const std::string& what,
                                  const std::string& ceiling = "");
// The message of a training step (`stage`: "step 12", or its evaluation or checkpoint) that could
// not allocate on `rank`, whose process held `held_bytes` of data segment when the step began and
// might add its `share` (host_share_now); `checkpoint` says what the last checkpoint holds.
std::string step_out_of_memory_message(const std::string& stage, int rank, const std::string& what,
                                       double held_bytes, const HostShare& share, const std::string& checkpoint);

// On the CPU a run's kept heap (core/host_allocation.h) may settle above the preflight's peak:
// measured runs peaked up to 1.5x it. headroom_warning: empty, or a warning when the steps added
// more than 1/kKeptHeapGrowth of what a process may add (its ceiling), so that a later step may
// stop the run (exit 7).
inline constexpr double kKeptHeapGrowth = 1.5;
std::string headroom_warning(const PreflightResult& r);
// "Fewer tokens per rank fit: a lower --max-log2 …": what to change when a step does not fit.
std::string fewer_tokens_advice();

}  // namespace longhaul::train

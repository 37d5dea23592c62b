// Where the ranks run: every rank's host name, the local rank its launcher gave it and the GPU it
// uses, gathered over the world, and whether they agree. A launcher variable read wrongly (or a
// host name that two nodes share) shows here first: on a host, local ranks must be 0..n-1 with
// local size n. The GPUs decide whether NCCL can carry the world's CUDA tensors.
#pragma once

#include <string>
#include <vector>

#include "launch/launcher.h"
#include "runtime/comm/comm.h"

namespace longhaul {

struct RankPlace {
  std::string host;
  int local_rank = 0, local_size = 1;
  std::string gpu;  // the UUID of the rank's CUDA device ("GPU-…", as nvidia-smi -L), empty: none
};

// Collective over comm: rank r's entry is rank r's host (gethostname), local rank / size and `gpu`
// (at most 63 characters).
std::vector<RankPlace> gather_placement(Communicator& comm, int local_rank, int local_size,
                                        const std::string& gpu = {});

// Empty when every host's ranks number 0..n-1 locally with local size n; otherwise what is wrong,
// naming the host and the ranks ("host node1: ranks 0 and 1 both have local rank 0").
std::string check_placement(const std::vector<RankPlace>& places);

// "node1: 0 1 | node2: 2 3": the ranks of each host in the order hosts first appear.
std::string describe_placement(const std::vector<RankPlace>& places);
// "0 GPU-1b2c… | 1 GPU-3d4e…": each rank's GPU, "-" for a rank without one; "none" when no rank has one.
std::string describe_gpus(const std::vector<RankPlace>& places);

// Whether init gives the world's CUDA tensors an NCCL transport, and why (for the config line).
struct NcclChoice {
  bool use = false;
  std::string why;
};
// Whether init must gather the ranks' GPUs to decide (a collective: the same on every rank):
// auto or nccl asked for, a build with NCCL, several ranks.
bool needs_gpu_census(Backend requested, bool nccl_built, int world_size);
// `requested` nccl: NCCL, or InvalidArgument naming a rank without a GPU or two ranks on one GPU
// (NCCL refuses them; it would fail at init or hang); Unsupported when the build has no NCCL.
// auto: NCCL exactly when the build has it, the world has several ranks and every rank has a GPU
// of its own. Per-rank CUDA_VISIBLE_DEVICES (Slurm --gpus-per-task=1), where each rank sees one
// device at index 0, counts as its own GPU because the UUIDs differ. A one-rank world needs no
// NCCL (no CUDA tensor travels between ranks). Other backends: never. `places`: one entry per rank.
NcclChoice choose_nccl(Backend requested, bool nccl_built, const std::vector<RankPlace>& places);

}  // namespace longhaul

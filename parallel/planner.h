// The cost model that picks a CP strategy (docs/parallel.md): for a problem (T, H, H_kv, D, P,
// mask, dtype) and a network, predicts per strategy and layout the forward+backward time, the
// bytes each rank sends and the memory each rank holds, and picks the fastest that fits.
//   compute: masked-area FLOPs of the busiest rank / measured kernel GFLOP/s, on a GPU plus the
//   start-up of the kernels' thread blocks over the rows each strategy's calls work;
//   communication: per message α + bytes/β, per link direction (full-duplex links carry the two
//   directions of TokenRing at once); ring steps overlap compute and transfer (max of the two);
//   Ulysses' all-to-alls do not overlap; bytes from parallel/bytes_model (exact, as measured).
#pragma once

#include <string>
#include <vector>

#include <optional>

#include "attention/mask.h"
#include "parallel/options.h"

namespace longhaul {

struct Network {
  std::string name;
  double alpha_s;         // latency per message
  double beta_Bps;        // bandwidth per link and direction
  bool full_duplex;       // both directions at full rate at once
  int ranks_per_node;     // ranks sharing the fast intra-node link (hybrid's Ulysses groups)
  double intra_beta_Bps;  // bandwidth inside a node (NVLink) when ranks_per_node > 1
  double device_memory_bytes = 0;  // per rank (a GPU's); 0: this machine's, shared by its ranks
  double device_memory_Bps = 0;    // its bandwidth (rsa's passes, merges); 0: Problem::memory_gbps
  // A GPU kernel's start-up per working thread block (per head and 128-row tile of the rows it
  // works: queries forward, keys backward), in tiles' time at the kernel rate, as the simulator's
  // KernelModel; 0 on the CPU, whose measured rate holds it.
  double setup_tiles_fwd = 0, setup_tiles_bwd = 0;
};
// "this-machine" (measured by `longhaul bench comm`), "nvlink", "infiniband", "pcie".
Network network_preset(const std::string& name);
std::vector<std::string> network_presets();

struct Problem {
  int64_t T = 0, H = 0, H_kv = 0, D = 0;
  int P = 1;
  int64_t elem_bytes = 4;
  std::string mask = "causal";   // full, causal, documents, causal_documents, causal_window
  std::optional<Mask> given_mask;  // any mask (a family, slices): used instead of the name when set
  // Predict only this strategy / layout (the others cost time at large T: their plans and bytes).
  std::optional<Strategy> only_strategy;
  std::optional<Layout> only_layout;
  std::vector<int64_t> cu_seqlens;  // for document masks (global offsets); empty: one document
  int64_t window = 0;            // causal_window's left extent
  double kernel_gflops = 100;    // measured local kernel rate (fwd+bwd), per rank
  // Ring Self-Attention computes with plain products and elementwise passes over its scores:
  double dense_gflops = 0;       // matrix product rate (0: kernel_gflops)
  double memory_gbps = 0;        // elementwise traffic and merges, bytes read + written (0: the network preset's)
  double first_touch_gbps = 0;   // fresh memory's first touch (a CPU's page faults; 0: free, as on a GPU)
  double memory_limit_bytes = 0; // per rank; 0 = no limit
};

struct Prediction {
  Strategy strategy = Strategy::Ring;
  Layout layout = Layout::Zigzag;
  int ulysses_degree = 1;
  Strategy inner = Strategy::Ring;  // hybrid's strategy across the Ulysses groups
  double compute_s = 0, comm_s = 0, time_s = 0;  // forward + backward, the busiest rank
  int64_t bytes_fwd = 0;                          // per rank, forward (max over ranks)
  int64_t memory_bytes = 0;                       // per rank, peak estimate
  bool feasible = true;
  std::string note;
};

// Every strategy × layout the problem allows (infeasible ones with a note), fastest first; the
// pick is the first feasible row.
std::vector<Prediction> plan_strategies(const Problem& problem, const Network& net);

Mask mask_of(const Problem& p);

}  // namespace longhaul

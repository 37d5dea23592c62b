// The virtual clock of a simulated rank: the simulator (parallel/simulate.h) gives each rank's
// thread one, the simulated communicator (runtime/comm/sim) advances it when a transfer completes,
// and the attention kernels' simulated path (attention/simulated.h) when it "computes". Code that
// runs outside a simulation sees no clock (current() == nullptr) and nothing changes for it.
#pragma once

#include <cstdint>

namespace longhaul::virtual_clock {

// Rates of the simulated attention kernel: FLOPs counted on the masked area only (forward
// 4·area·H·D, backward 2.5× that), plus a fixed cost per call (a launch, a tile setup).
struct KernelModel {
  double forward_flops_per_s = 400e12;
  double backward_flops_per_s = 300e12;
  double per_call_s = 10e-6;
  // Tiles of the kernel (query rows × key rows of the block): a tile holding any visible pair
  // costs its whole area, as in FlashAttention-style kernels, so masks with many short documents
  // or thin bands cost more than their exact area. 0: the exact masked area.
  int64_t tile_q = 0, tile_k = 0;
  // Code that computes outside the attention kernel with plain tensor operations (Ring
  // Self-Attention's dense score matrices): matrix products at a GEMM rate, elementwise passes at
  // a memory rate (bytes read + written), and the bytes of their fresh outputs at a first-touch
  // rate (a CPU's page faults on new memory; 0: free, as under a caching allocator).
  double dense_flops_per_s = 600e12;
  double memory_bytes_per_s = 2.5e12;
  double first_touch_bytes_per_s = 0;
  // Tiles of consecutive local rows whatever their positions (the CPU kernel), instead of tiles
  // restarted at every run of consecutive positions (a kernel called once per run).
  bool tiles_of_local_rows = false;
  // With tiles_of_local_rows: a partial tile costs its slices of this many query rows, each
  // trimmed to the rows and keys it sees (the CPU kernel's 64), instead of its whole area (0).
  int64_t partial_slice_rows = 0;
  // Start-up and finish of each thread block a FlashAttention-style GPU kernel runs, in tiles'
  // time: per head, each query tile with work in the forward (loading it, filling the pipeline,
  // writing its rows), each key tile with work in the backward; a short tile (a run's last) in
  // proportion to its rows. A block whose tiles each see few tiles of the other side pays it over
  // little work, so a ring step's 4K-key block runs below the rate of one long block.
  // 0: none (the CPU kernel, whose calibration is measured on the shapes it runs).
  double forward_setup_tiles = 0;
  double backward_setup_tiles = 0;
};

// The start-up of a FlashAttention-class GPU kernel's thread blocks (KernelModel's setup tiles),
// fitted on our H100 kernel rows (docs/parallel.md, Simulator): the GPU presets of the simulator
// and the planner, and the emulated-GPU prediction of `bench cp-gpu`.
inline constexpr double kGpuForwardSetupTiles = 4, kGpuBackwardSetupTiles = 1.5;
// Their tile: query rows × key rows of one thread block's step.
inline constexpr int64_t kGpuTileRows = 128;

struct RankClock {
  double now = 0;          // seconds since the simulation started, on this rank
  double compute_s = 0;    // of which the kernels ran
  double comm_wait_s = 0;  // of which this rank waited for transfers (exposed communication)
  KernelModel kernel;
};

// The calling thread's clock, or nullptr outside a simulation.
RankClock* current();
void set_current(RankClock* clock);

// Charges `seconds` of compute to the calling thread's clock (no-op without one).
void charge_compute(double seconds);
// Charges a plain matrix product (`flops`), elementwise memory traffic (`bytes`) and the first
// touch of `fresh_bytes` of new memory at the clock's dense rates (no-op without a clock).
void charge_dense(double flops, double bytes, double fresh_bytes = 0);

}  // namespace longhaul::virtual_clock

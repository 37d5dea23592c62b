// `longhaul simulate`: the CP simulator (parallel/simulate.h) over strategies × layouts × masks ×
// rank counts, weak scaling (--tokens-per-rank) or a fixed length (--tokens), on a preset or
// given network and kernel model. Each row runs the strategy's real schedule on shape-only
// tensors; nothing is computed, so P = 64 at 512K tokens takes seconds on a laptop core.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>

#include "cli/cli.h"
#include "core/errors.h"
#include "core/offsets.h"
#include "core/report.h"
#include "data/length_mix.h"
#include "parallel/simulate.h"

namespace longhaul::cli {
namespace {

constexpr int kMostSimulatedRanks = 1024;  // as the command promises (its threads, and P^2 schedules)

struct Preset {
  const char* name;
  virtual_clock::KernelModel kernel;
  sim::Network network;
  double memory_gib;  // per GPU
  const char* what;
};

// H100 SXM: FA3-class bf16 rates (forward ≈ the best published CP rate at 8 GPUs, backward ≈ 0.8×)
// on 128 × 128 tiles; each working tile's start-up and the per-call cost fitted on our H100 kernel
// rows (docs/parallel.md, Simulator): cuDNN's full blocks at 4K and 16K give 4.0 tiles forward at
// no per-call cost, 3.1 at 5 µs, 1.5–1.8 backward; FlashAttention-2's causal window against its
// causal block at 16K, 5.3 forward whatever the per-call cost. NVLink 4 inside a node of 8
// (≈ 360 GB/s achieved per direction), one 400 Gb/s InfiniBand NIC per GPU across nodes
// (≈ 45 GB/s). The H200 is the same chip with faster memory: the same start-up.
// A FlashAttention-class GPU kernel on 128 × 128 tiles with the fitted start-up and per-call cost.
virtual_clock::KernelModel gpu_kernel(double fwd_flops, double bwd_flops, double gemm_flops, double memory_bytes) {
  return {.forward_flops_per_s = fwd_flops, .backward_flops_per_s = bwd_flops, .per_call_s = 5e-6,
          .tile_q = virtual_clock::kGpuTileRows, .tile_k = virtual_clock::kGpuTileRows,
          .dense_flops_per_s = gemm_flops, .memory_bytes_per_s = memory_bytes,
          .forward_setup_tiles = virtual_clock::kGpuForwardSetupTiles,
          .backward_setup_tiles = virtual_clock::kGpuBackwardSetupTiles};
}

const Preset kPresets[] = {
    {"h100", gpu_kernel(650e12, 520e12, 700e12, 2.8e12), {8, {3e-6, 360e9}, {6e-6, 45e9}}, 80,
     "H100 SXM: kernel 650/520 TFLOP/s fwd/bwd on 128x128 tiles, start-up 4/1.5 tiles per working tile, 5 us per "
     "call, GEMM 700 TFLOP/s, HBM 2.8 TB/s, NVLink 360 GB/s in nodes of 8, IB 45 GB/s"},
    {"h200", gpu_kernel(680e12, 540e12, 720e12, 4.0e12), {8, {3e-6, 360e9}, {6e-6, 45e9}}, 141,
     "H200 SXM: kernel 680/540 TFLOP/s fwd/bwd on 128x128 tiles, start-up 4/1.5 tiles per working tile, 5 us per "
     "call, GEMM 720 TFLOP/s, HBM 4.0 TB/s, NVLink 360 GB/s in nodes of 8, IB 45 GB/s"},
};

const Preset& preset(const std::string& name) {
  for (const Preset& p : kPresets)
    if (name == p.name) return p;
  std::string known;
  for (const Preset& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
  throw InvalidArgument("simulate: unknown --preset '" + name + "' (known: " + known + ")");
}

// "a,b c" → {a, b, c}
std::vector<std::string> words(const std::vector<std::string>& given) {
  std::vector<std::string> out;
  for (const std::string& g : given) {
    size_t start = 0;
    while (start <= g.size()) {
      const size_t end = std::min(g.find(',', start), g.size());
      if (end > start) out.push_back(g.substr(start, end - start));
      start = end + 1;
    }
  }
  return out;
}

// A family of masks::make, or full_document_long / causal_document_long: LongCA-bench's long
// document mix (data/length_mix.h) cut to T tokens.
Mask make_mask(const std::string& name, int64_t t, int64_t param, uint64_t seed) {
  const bool long_docs = name == "full_document_long" || name == "causal_document_long";
  if (!long_docs) return masks::make(name, t, {}, param);
  const std::vector<int64_t> cu = data::document_offsets_of_mix("longca_long", t, seed);
  return name == "causal_document_long" ? masks::causal_document(cu) : masks::full_document(cu);
}

// A configuration that did not run: its columns empty (the table stays aligned), the reason in note.
report::Row empty_row(report::Row row, const std::string& why) {
  for (const char* key : {"fwd_ms", "bwd_ms", "fwd_tflops", "bwd_tflops", "compute_imbalance", "exposed_comm_ms",
                          "sent_mib", "peak_mib", "memory_gib", "device_memory_gib"})
    row.add(key, NAN);
  return row.add("note", why);
}

}  // namespace

int cmd_simulate(const std::vector<std::string>& args) {
  std::vector<std::string> strategies = {"ring", "allgather", "tokenring", "ulysses", "hybrid"}, layouts = {"zigzag"},
                           mask_names = {"causal"};
  std::vector<int> ranks = {8};
  int64_t tokens = 0, tokens_per_rank = 8192, heads = 64, kv_heads = 8, head_dim = 128, param = 0;
  int ulysses_degree = 0;
  double timeout_s = 600;
  std::string dtype = "bf16", preset_name = "h100";
  double fwd_tflops = 0, bwd_tflops = 0, call_us = -1, fwd_setup_tiles = -1, bwd_setup_tiles = -1, intra_gbps = 0, inter_gbps = 0, latency_us = -1;
  int ranks_per_node = 0;
  bool forward_only = false, json = false;
  uint64_t seed = 0;
  po::options_description desc("longhaul simulate");
  desc.add_options()
      ("strategies", po::value(&strategies)->multitoken(), "ring allgather tokenring ulysses hybrid rsa (default: all but rsa, whose dense scores need T/P x T memory)")
      ("layouts", po::value(&layouts)->multitoken(), "zigzag striped contiguous balanced (default zigzag)")
      ("masks", po::value(&mask_names)->multitoken(), "mask families (masks::make names) and full_document_long, causal_document_long")
      ("mask-param", po::value(&param)->default_value(0), "the family's parameter (window, prefix, block size)")
      ("ranks", po::value(&ranks)->multitoken(), "rank counts, 1 to 1024 (default 8)")
      ("tokens-per-rank", po::value(&tokens_per_rank)->default_value(tokens_per_rank), "weak scaling: T = this × ranks")
      ("tokens", po::value(&tokens)->default_value(0), "a fixed T instead (strong scaling)")
      ("heads", po::value(&heads)->default_value(heads), "query heads")
      ("kv-heads", po::value(&kv_heads)->default_value(kv_heads), "key/value heads")
      ("head-dim", po::value(&head_dim)->default_value(head_dim), "head dimension")
      ("ulysses-degree", po::value(&ulysses_degree)->default_value(0), "hybrid: the Ulysses degree (0: min(P, ranks per node), USP)")
      ("dtype", po::value(&dtype)->default_value(dtype), "bf16, fp16, fp32")
      ("preset", po::value(&preset_name)->default_value(preset_name), "kernel and network: h100, h200")
      ("fwd-tflops", po::value(&fwd_tflops)->default_value(0), "kernel forward TFLOP/s on the masked area (0: the preset's)")
      ("bwd-tflops", po::value(&bwd_tflops)->default_value(0), "kernel backward TFLOP/s (0: the preset's)")
      ("call-us", po::value(&call_us)->default_value(-1), "fixed cost per kernel call, µs (<0: the preset's)")
      ("fwd-setup-tiles", po::value(&fwd_setup_tiles)->default_value(-1), "start-up of each working query tile in the forward, in tiles' time (<0: the preset's)")
      ("bwd-setup-tiles", po::value(&bwd_setup_tiles)->default_value(-1), "start-up of each working key tile in the backward, in tiles' time (<0: the preset's)")
      ("ranks-per-node", po::value(&ranks_per_node)->default_value(0), "ranks sharing the fast link (0: the preset's)")
      ("intra-gbps", po::value(&intra_gbps)->default_value(0), "GB/s per direction inside a node (0: the preset's)")
      ("inter-gbps", po::value(&inter_gbps)->default_value(0), "GB/s per direction across nodes (0: the preset's)")
      ("latency-us", po::value(&latency_us)->default_value(-1), "latency of every link, µs (<0: the preset's)")
      ("forward-only", po::bool_switch(&forward_only), "no backward pass")
      ("timeout", po::value(&timeout_s)->default_value(600), "real seconds a simulated rank may wait for a peer (a deadlocked schedule fails after it)")
      ("seed", po::value(&seed)->default_value(0), "document mix of the *_document_long masks")
      ("json", po::bool_switch(&json), "JSON lines instead of the table");
  po::variables_map vm;
  if (!parse(args, desc, vm, "longhaul simulate [options]")) return 0;
  check_head_counts(vm, "simulate", heads, kv_heads, head_dim);
  // Every simulated rank is a thread of this process, and its schedule's cost grows with P^2.
  for (const int r : ranks)
    LH_CHECK(r >= 1 && r <= kMostSimulatedRanks, "simulate: --ranks ", r, ": expected 1 to ", kMostSimulatedRanks);
  LH_CHECK(tokens >= 0 && tokens_per_rank > 0, "simulate: --tokens ", tokens, " must be >= 0 (0: weak scaling) and "
           "--tokens-per-rank ", tokens_per_rank, " > 0");
  for (const int r : ranks)  // a mask's areas stay exact in int64 up to 2^31 tokens
    LH_CHECK((tokens > 0 ? tokens : tokens_per_rank * r) <= (int64_t(1) << 31), "simulate: ",
             tokens > 0 ? "--tokens" : "--tokens-per-rank x --ranks", " gives ", tokens > 0 ? tokens : tokens_per_rank * r,
             " tokens: expected at most 2^31");

  Preset p = preset(preset_name);
  if (fwd_tflops > 0) p.kernel.forward_flops_per_s = fwd_tflops * 1e12;
  if (bwd_tflops > 0) p.kernel.backward_flops_per_s = bwd_tflops * 1e12;
  if (call_us >= 0) p.kernel.per_call_s = call_us * 1e-6;
  if (fwd_setup_tiles >= 0) p.kernel.forward_setup_tiles = fwd_setup_tiles;
  if (bwd_setup_tiles >= 0) p.kernel.backward_setup_tiles = bwd_setup_tiles;
  if (ranks_per_node > 0) p.network.ranks_per_node = ranks_per_node;
  if (intra_gbps > 0) p.network.intra.bytes_per_s = intra_gbps * 1e9;
  if (inter_gbps > 0) p.network.inter.bytes_per_s = inter_gbps * 1e9;
  if (latency_us >= 0) p.network.intra.latency_s = p.network.inter.latency_s = latency_us * 1e-6;
  const c10::ScalarType type = dtype == "bf16" ? at::kBFloat16 : dtype == "fp16" ? at::kHalf
                             : dtype == "fp32" ? at::kFloat : throw InvalidArgument("simulate: --dtype must be bf16, fp16 or fp32, got " + dtype);

  if (!json)
    std::cout << "# simulate: " << p.what << "; H " << heads << ":" << kv_heads << ", D " << head_dim << ", " << dtype
              << (tokens > 0 ? ", T " + std::to_string(tokens) : ", " + std::to_string(tokens_per_rank) + " tokens per rank")
              << ". TFLOP/s per rank on the masked area (fwd 4·area·H·D, bwd 2.5×) over the slowest rank's time\n";
  std::vector<report::Row> rows;
  for (int P : ranks)
    for (const std::string& mask_name : words(mask_names))
      for (const std::string& layout : words(layouts))
        for (const std::string& strategy : words(strategies)) {
          SimulationSetup s;
          s.T = tokens > 0 ? tokens : tokens_per_rank * P;
          s.H = heads;
          s.H_kv = kv_heads;
          s.D = head_dim;
          s.P = P;
          s.dtype = type;
          s.options.strategy = strategy_from_string(strategy);
          s.options.layout = layout_from_string(layout);
          if (s.options.strategy == Strategy::Hybrid)
            s.options.ulysses_degree = ulysses_degree > 0 ? ulysses_degree : std::min(P, p.network.ranks_per_node);
          s.mask = make_mask(mask_name, s.T, param, seed);
          s.network = p.network;
          s.kernel = p.kernel;
          s.backward = !forward_only;
          s.timeout = timeout_of_seconds(timeout_s, "--timeout");
          report::Row row;
          row.add("level", std::string("simulated"))
              .add("strategy", strategy)
              .add("layout", layout)
              .add("mask", mask_name)
              .add("P", int64_t(P))
              .add("T", s.T);
          try {
            const Simulation sim = simulate(s);
            double compute_max = 0, compute_sum = 0, exposed_max = 0;
            int64_t sent = 0, peak = 0;
            for (const auto& r : sim.ranks) {
              compute_max = std::max(compute_max, r.compute_s);
              compute_sum += r.compute_s;
              exposed_max = std::max(exposed_max, r.comm_wait_s);
              sent = std::max(sent, r.bytes_fwd + r.bytes_bwd);
              peak = std::max(peak, r.peak_bytes);
            }
            // Memory per rank: the strategy's buffers at their peak plus what every layer holds: its
            // q, k, v, out and lse, and in the backward dout, dq, dk, dv.
            const double rows_per_rank = std::ceil(double(s.T) / P), elem = double(c10::elementSize(type));
            const double held = rows_per_rank * double(s.D) * elem * double(3 * s.H + 4 * s.H_kv) +
                                rows_per_rank * double(s.H) * 4.0;
            const double memory_gib = (double(peak) + held) / double(1 << 30);
            const bool fits = memory_gib <= p.memory_gib;
            row.add("fwd_ms", sim.forward_s * 1e3)
                .add("bwd_ms", sim.backward_s * 1e3)
                .add("fwd_tflops", sim.forward_tflops_per_rank())
                .add("bwd_tflops", sim.backward_tflops_per_rank())
                .add("compute_imbalance", compute_sum > 0 ? compute_max / (compute_sum / P) : 0.0)
                .add("exposed_comm_ms", exposed_max * 1e3)
                .add("sent_mib", double(sent) / (1 << 20))
                .add("peak_mib", double(peak) / (1 << 20))
                .add("memory_gib", memory_gib)
                .add("device_memory_gib", p.memory_gib)
                .add("note", fits ? std::string("-")
                                  : detail::str_cat("infeasible: needs ", memory_gib, " GiB per rank, the device has ",
                                                    p.memory_gib));
          } catch (const Unsupported& e) {
            row = empty_row(row, std::string("unsupported: ") + e.what());
          } catch (const InvalidArgument& e) {  // e.g. Ulysses with more ranks than heads: a row, not the end
            row = empty_row(row, std::string("not applicable: ") + e.what());
          }
          rows.push_back(row);
          if (json) report::print_json(std::cout, {row});
        }
  if (!json) report::print_table(std::cout, rows);
  return 0;
}

}  // namespace longhaul::cli

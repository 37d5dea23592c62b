#include "parallel/planner.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "parallel/bytes_model.h"
#include "parallel/rsa_cost.h"
#include "parallel/shard_plan.h"
#include "core/errors.h"
#include "core/virtual_clock.h"

namespace longhaul {

Network network_preset(const std::string& name) {
  // this-machine: `mpirun -np 2 longhaul bench comm` here: ~7 µs per message through the progress
  // engine, ~10 GB/s for MiB messages over shared memory; a copy costs CPU, so not full duplex.
  // Its memory: what the ranks of one machine share (MemAvailable, divided by the caller).
  constexpr double kGiB = double(1 << 30);
  constexpr double kFwd = virtual_clock::kGpuForwardSetupTiles, kBwd = virtual_clock::kGpuBackwardSetupTiles;
  // GPU presets: an H100's memory (80 GiB, ~2.8 TB/s achieved), a 48 GiB PCIe card's (~0.8 TB/s);
  // their kernels' start-up as `longhaul simulate`'s presets (4 tiles forward, 1.5 backward).
  if (name == "this-machine") return {name, 7e-6, 10e9, false, 2, 10e9, 0, 0};
  if (name == "nvlink") return {name, 3e-6, 150e9, true, 8, 150e9, 80 * kGiB, 2.8e12, kFwd, kBwd};     // H100 NVLink node, per direction
  if (name == "infiniband") return {name, 5e-6, 25e9, true, 8, 150e9, 80 * kGiB, 2.8e12, kFwd, kBwd};  // 200 Gb/s NDR per GPU, NVLink inside
  if (name == "pcie") return {name, 10e-6, 12e9, true, 4, 12e9, 48 * kGiB, 0.8e12, kFwd, kBwd};        // PCIe 4 box, peer to peer
  std::string all;
  for (const auto& n : network_presets()) all += (all.empty() ? "" : ", ") + n;
  throw InvalidArgument("unknown network '" + name + "', expected one of " + all + " (or give --alpha and --beta)");
}

std::vector<std::string> network_presets() { return {"this-machine", "nvlink", "infiniband", "pcie"}; }

Mask mask_of(const Problem& p) {
  if (p.given_mask) return *p.given_mask;
  const auto& families = masks::family_names();
  if (p.mask != "full" && p.mask != "causal" && std::find(families.begin(), families.end(), p.mask) != families.end())
    return masks::make(p.mask, p.T, p.cu_seqlens, p.window, 0);  // window: the family's parameter
  Mask m = (p.mask == "full" || p.mask == "documents") ? Mask::full() : Mask::causal();
  if (p.mask == "documents" || p.mask == "causal_documents") {
    LH_CHECK(!p.cu_seqlens.empty(), "planner: mask ", p.mask, " needs document offsets");
    m = m.documents(p.cu_seqlens);
  } else if (p.mask == "causal_window") {
    m = m.window(p.window, 0);
  } else if (p.mask != "full" && p.mask != "causal") {
    std::string families;
    for (const std::string& f : masks::family_names()) families += (families.empty() ? "" : ", ") + f;
    throw InvalidArgument(detail::str_cat("planner: unknown mask '", p.mask,
                                          "', expected full, causal, documents, causal_documents, causal_window or a "
                                          "family: ", families));
  }
  return m;
}

namespace {

// Masked area the busiest rank computes for a layout, from the plan's rows (runs of consecutive
// positions); striped rows are all balanced, so total / P.
double busiest_area(const ShardPlan& plan, const Mask& mask, int p) {
  if (plan.layout() == Layout::Striped) return double(mask.area(0, plan.T(), 0, plan.T())) / p;
  const std::vector<int64_t> areas = plan.rank_areas(mask);
  return double(*std::max_element(areas.begin(), areas.end()));
}

double transfer(const Network& n, double bytes, int messages = 1) { return messages * n.alpha_s + bytes / n.beta_Bps; }

// Bytes one merge of a partial result over `rows` query rows moves (merge_into): the accumulators
// (out and lse; float32, float64 for float64 inputs) read and written, the partial (out in the
// input's dtype, lse as the accumulators) read.
double merge_bytes(double rows, int64_t h, int64_t d, int64_t elem_bytes) {
  const double acc = elem_bytes == 8 ? 8 : 4;
  return rows * double(h) * (2 * acc * double(d + 1) + double(d * elem_bytes) + acc);
}

}  // namespace

std::vector<Prediction> plan_strategies(const Problem& pr, const Network& net) {
  LH_CHECK(pr.T > 0 && pr.H > 0 && pr.H_kv > 0 && pr.D > 0 && pr.P >= 1 && pr.H % pr.H_kv == 0, "planner: T ", pr.T,
           ", H ", pr.H, ", H_kv ", pr.H_kv, ", D ", pr.D, ", P ", pr.P,
           ": expected T, H, H_kv, D > 0, P >= 1 and H a multiple of H_kv");
  const Mask mask = mask_of(pr);
  const std::vector<int64_t>& docs = pr.cu_seqlens.empty() ? mask.cu_seqlens() : pr.cu_seqlens;
  std::optional<at::Tensor> cu;
  if (!docs.empty()) cu = at::tensor(docs, at::kLong);
  // Balanced plans are cut by the mask's area; the others by the documents alone.
  // One plan per layout, seen from each rank (shared rows: the byte model's needs are computed once).
  std::map<Layout, ShardPlan> plans;
  auto plan_for = [&](Layout l, int rank) {
    auto it = plans.find(l);
    if (it == plans.end())
      it = plans.emplace(l, l == Layout::Balanced ? ShardPlan::for_mask(pr.T, mask, l, pr.P, 0)
                                                  : ShardPlan(pr.T, cu, l, pr.P, 0)).first;
    return it->second.with_rank(rank);
  };
  const double flops_per_area = 4.0 * pr.H * pr.D * 3.5;  // forward + backward (F_bwd = 2.5 F_fwd)
  const double rate = pr.kernel_gflops * 1e9;
  const int64_t s = pr.elem_bytes, tl = (pr.T + pr.P - 1) / pr.P;
  const int64_t acc_bytes = s == 8 ? 8 : 4;  // rsa's scores: float32, float64 for float64 inputs
  const int64_t io_bytes = tl * (2 * pr.H + 2 * pr.H_kv) * pr.D * s + tl * pr.H * pr.D * 4 * 2;  // q,k,v,out + dq/dout
  const double memory_Bps = pr.memory_gbps > 0 ? pr.memory_gbps * 1e9 : net.device_memory_Bps;
  // Seconds of the forward's merges of partial results, `rows` query rows in all (free without a rate).
  auto merges_s = [&](double rows) { return memory_Bps > 0 ? merge_bytes(rows, pr.H, pr.D, s) / memory_Bps : 0.0; };
  // Seconds of the kernels' thread-block start-ups when the forward's calls work `q_rows` query
  // rows and the backward's `k_rows` key rows in all (rows of all H heads; each row's share of a
  // 128-row tile's start-up, as the simulator charges it).
  auto startups_s = [&](double q_rows, double k_rows) {
    return 4.0 * double(pr.H) * double(pr.D) * double(virtual_clock::kGpuTileRows) *
           (net.setup_tiles_fwd * q_rows + 2.5 * net.setup_tiles_bwd * k_rows) / rate;
  };
  std::vector<Prediction> out;
  for (Strategy st : {Strategy::Ring, Strategy::TokenRing, Strategy::AllGatherKV, Strategy::Ulysses,
                      Strategy::RingSelfAttention, Strategy::Hybrid}) {
    if (pr.only_strategy && *pr.only_strategy != st) continue;
    for (Layout l : {Layout::Zigzag, Layout::Contiguous, Layout::Striped, Layout::Balanced})
    for (Strategy inner : {Strategy::Ring, Strategy::TokenRing}) {
      if (pr.only_layout && *pr.only_layout != l) continue;
      if (inner != Strategy::Ring && st != Strategy::Hybrid) continue;  // the inner strategy is hybrid's alone
      Prediction p;
      p.strategy = st;
      p.layout = l;
      p.inner = inner;
      if (st == Strategy::Hybrid) p.ulysses_degree = std::min(pr.P, net.ranks_per_node);
      const ShardPlan plan = plan_for(l, 0);
      // Ulysses computes every row for H/P heads: balanced whatever the layout. Ring Self-Attention
      // computes its full score matrix (T/P rows × T keys) with products and elementwise passes.
      if (st == Strategy::RingSelfAttention) {
        const DenseCost dense = rsa_dense_cost(pr.H, tl, pr.T, pr.D, mask.is_causal(), acc_bytes);
        p.compute_s = dense.flops / (pr.dense_gflops > 0 ? pr.dense_gflops * 1e9 : rate) +
                      (memory_Bps > 0 ? dense.bytes / memory_Bps : 0.0) +
                      (pr.first_touch_gbps > 0 ? dense.fresh_bytes / (pr.first_touch_gbps * 1e9) : 0.0);
      } else {
        const double area = st == Strategy::Ulysses ? double(mask.area(0, pr.T, 0, pr.T)) / pr.P
                                                    : busiest_area(plan, mask, pr.P);
        p.compute_s = area * flops_per_area / rate;
      }
      const int steps = pr.P - 1;
      const double step_compute = p.compute_s / std::max(1, pr.P);
      try {
        if (st == Strategy::Hybrid) {
          const int u = p.ulysses_degree;
          if (u <= 1 || pr.P % u != 0 || pr.H % u != 0) throw InvalidArgument("needs a Ulysses degree dividing P and H");
          const int rings = pr.P / u;
          Network intra = net;
          intra.beta_Bps = net.intra_beta_Bps;
          if (pr.H_kv % u != 0 && u % pr.H_kv != 0) throw InvalidArgument("hybrid needs H_kv % U == 0 or U % H_kv == 0");
          const double a2a_bytes = double(tl) * (2 * pr.H + 2 * std::max<int64_t>(pr.H_kv, u)) * pr.D * s * (u - 1) / u;
          const double a2a = transfer(intra, a2a_bytes, u - 1);
          for (int r = 0; r < pr.P; ++r) {
            const ShardPlan pr_r = plan_for(l, r);
            p.bytes_fwd = std::max(p.bytes_fwd, forward_bytes_formula(st, pr_r, mask, r, pr.H, pr.H_kv, pr.D, s, u,
                                                                      inner));
          }
          // The inner strategy's share of the bytes crosses the slow link over rings - 1 steps, the
          // backward about twice the forward (float32 gradients); overlapped with the compute but one step.
          const double ring_bytes = std::max(0.0, double(p.bytes_fwd) - a2a_bytes);
          const int ring_steps = std::max(1, rings - 1);
          const double ring = transfer(net, ring_bytes, 2 * ring_steps) * 3;
          // The inner strategy's merges: rings - 1 partials over T/rings rows of H/U heads each.
          if (rings > 1) p.compute_s += merges_s(double(tl) * (rings - 1));
          // Each ring step: T/rings rows of H/U heads, the local rows' worth, both passes.
          p.compute_s += startups_s(double(tl) * rings, double(tl) * rings);
          p.comm_s = 3 * a2a + std::max(0.0, ring - p.compute_s) + (rings > 1 ? ring / (3 * ring_steps) : 0);
          p.memory_bytes = io_bytes + int64_t(4 * ring_bytes / ring_steps);
          p.note = "ulysses " + std::to_string(u) + " inside nodes, " + to_string(inner) + " across";
        } else {
          if (st == Strategy::RingSelfAttention && (mask.has_documents() || mask.has_window() || mask.is_general()))
            throw InvalidArgument("rsa supports full and causal masks only");
          if (st == Strategy::Ulysses && (pr.H % pr.P != 0 || (pr.H_kv % pr.P != 0 && pr.P % pr.H_kv != 0)))
            throw InvalidArgument("ulysses needs H % P == 0 and H_kv % P == 0 or P % H_kv == 0");
          int64_t bytes = 0;
          for (int r = 0; r < pr.P; ++r) {
            const ShardPlan pr_r = plan_for(l, r);
            bytes = std::max(bytes, forward_bytes_formula(st, pr_r, mask, r, pr.H, pr.H_kv, pr.D, s));
          }
          p.bytes_fwd = bytes;
          const double kv_step = double(tl) * 2 * pr.H_kv * pr.D * s;
          switch (st) {
            case Strategy::Ring: {
              // A partial per step merged into the local rows (at most all of them: the rows that
              // see the visiting block).
              p.compute_s += merges_s(double(tl) * steps);
              // Every step's call works (at most) the local rows against the visiting block.
              p.compute_s += startups_s(double(tl) * pr.P, double(tl) * pr.P);
              // fwd: K,V per step; bwd: K,V and float32 dK,dV per step; overlapped with compute.
              const double fwd = transfer(net, bytes, 2 * steps), bwd = 2 * fwd + transfer(net, double(bytes) * 4 / s);
              p.comm_s = std::max(0.0, fwd + bwd - p.compute_s) + (steps ? transfer(net, kv_step) : 0);
              p.memory_bytes = io_bytes + int64_t(kv_step * 2 + kv_step * 4 / s * 3);
              break;
            }
            case Strategy::TokenRing: {
              // Q one way, (out, lse) the other: concurrent on full-duplex links, summed otherwise.
              const double q_dir = double(tl) * pr.H * pr.D * s * steps, back = double(bytes) - q_dir;
              // Each arriving (out, lse) merged over its own rows: as many rows as go back.
              const double result_row = double(pr.H) * (pr.D * s + (s == 8 ? 8 : 4));
              p.compute_s += merges_s(std::max(0.0, back) / result_row);
              // Each step the key owner works a visiting query block against its local keys.
              p.compute_s += startups_s(double(tl) * pr.P, double(tl) * pr.P);
              const double fwd = net.full_duplex ? transfer(net, std::max(q_dir, back), steps)
                                                 : transfer(net, double(bytes), 2 * steps);
              const double bwd = net.full_duplex ? transfer(net, std::max(2 * q_dir, back * 4 / s), steps)
                                                 : transfer(net, 2 * q_dir + back * 4 / s, 3 * steps);
              p.comm_s = std::max(0.0, fwd + bwd - p.compute_s) + (steps ? transfer(net, q_dir / std::max(1, steps)) : 0);
              p.memory_bytes = io_bytes + int64_t(double(tl) * pr.H * pr.D * s * 4);
              break;
            }
            case Strategy::AllGatherKV: {
              // The keys before and after the local ones, each a partial merged over the local rows.
              p.compute_s += merges_s(double(tl) * std::min(2, steps));
              // Forward: the local rows against their own keys and the two sides; backward: one
              // call over every key row (each key tile sees only the local queries).
              p.compute_s += startups_s(double(tl) * std::min(3, pr.P), double(pr.T));
              const double fwd = transfer(net, bytes, steps), bwd = fwd + transfer(net, double(bytes) * 4 / s, steps);
              p.comm_s = std::max(0.0, fwd - step_compute) + bwd;
              p.memory_bytes = io_bytes + int64_t(double(pr.T) * 2 * pr.H_kv * pr.D * (s + 4));
              break;
            }
            case Strategy::Ulysses: {
              p.compute_s += startups_s(double(tl), double(tl));  // T rows of H/P heads
              const double fwd = transfer(net, bytes, 4 * steps);
              p.comm_s = fwd * 3;  // backward moves q, k, v, dout, out-stats and the three grads
              p.memory_bytes = io_bytes + int64_t(double(pr.T) * (pr.H + 2 * std::max<int64_t>(pr.H_kv, pr.P)) /
                                                  pr.P * pr.D * (s + 4));
              break;
            }
            case Strategy::RingSelfAttention: {
              p.comm_s = transfer(net, bytes, 2 * steps) * 3 + transfer(net, double(pr.T) * 2 * pr.H_kv * pr.D * 4, steps);
              // Two score-sized buffers at once (backward: P, and dS in dO·Vᵀ's output).
              p.memory_bytes = io_bytes + int64_t(2.0 * pr.H * tl * pr.T * acc_bytes);
              p.note = "quadratic memory, blocking communication";
              break;
            }
            default: break;
          }
        }
      } catch (const Error& e) {
        p.feasible = false;
        p.note = e.what();
      }
      p.time_s = p.compute_s + p.comm_s;
      if (p.feasible && pr.memory_limit_bytes > 0 && p.memory_bytes > pr.memory_limit_bytes) {
        p.feasible = false;
        p.note = "does not fit in memory";
      }
      out.push_back(p);
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Prediction& a, const Prediction& b) {
    if (a.feasible != b.feasible) return a.feasible;
    return a.time_s < b.time_s;
  });
  return out;
}

}  // namespace longhaul

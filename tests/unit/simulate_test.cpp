// The CP simulator (parallel/simulate.h): the bytes of every strategy × layout × mask family
// equal a real run's on local thread-ranks (the same schedule runs, on shape-only tensors), the
// virtual times follow the kernel and network models, and bad setups are named errors.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "core/errors.h"
#include "parallel/bytes_model.h"
#include "parallel/context_parallel.h"
#include "parallel/planner.h"
#include "parallel/rsa_cost.h"
#include "attention/simulated.h"
#include "parallel/simulate.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/comm/nccl_order/communicator.h"
#include "runtime/comm/sim/communicator.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <thread>

namespace longhaul {
namespace {

// Bytes each rank sends (forward, backward) in a real run with data on local thread-ranks.
std::vector<std::pair<int64_t, int64_t>> measured_bytes(const SimulationSetup& s) {
  std::vector<std::pair<int64_t, int64_t>> bytes(s.P);
  local::run_ranks(s.P, [&](Communicator& comm) {
    const ShardPlan plan = ShardPlan::for_mask(s.T, s.mask, s.options.layout, s.P, comm.rank());
    ContextParallel cp(comm.shared_from_this(), s.options);
    at::manual_seed(1 + comm.rank());
    const auto f = at::TensorOptions().dtype(at::kFloat);
    const int64_t rows = plan.local_rows();
    at::Tensor q = at::randn({rows, s.H, s.D}, f), k = at::randn({rows, s.H_kv, s.D}, f),
               v = at::randn({rows, s.H_kv, s.D}, f);
    AttentionOutput out = cp.forward(q, k, v, plan, s.mask);
    cp.backward(at::randn_like(q), q, k, v, out.out, out.lse, plan, s.mask);
    bytes[comm.rank()] = {cp.stats().bytes_sent_fwd, cp.stats().bytes_sent_bwd};
  });
  return bytes;
}

SimulationSetup small(Strategy strategy, Layout layout, int p, const Mask& mask, int64_t t) {
  SimulationSetup s;
  s.T = t;
  s.H = 4;
  s.H_kv = 2;
  s.D = 8;
  s.P = p;
  s.dtype = at::kFloat;  // the same element size as the measured run
  s.options.strategy = strategy;
  s.options.layout = layout;
  if (strategy == Strategy::Hybrid) s.options.ulysses_degree = 2;
  s.mask = mask;
  s.timeout = std::chrono::seconds(20);
  return s;
}

TEST(Simulate, BytesEqualARealRunForEveryStrategyLayoutAndFamily) {
  const int64_t t = 389;  // odd: uneven shards
  const std::vector<int64_t> cu = {0, 100, 103, 250, 389};
  const std::vector<Mask> masks = {Mask::causal(), masks::causal_document(cu), masks::sliding_window_causal(t, 40),
                                   masks::share_question({0, 60, 200, 389}), masks::global_sliding_window(t, 16, 32)};
  int cases = 0;
  for (Strategy strategy : {Strategy::Ring, Strategy::AllGatherKV, Strategy::TokenRing, Strategy::Ulysses,
                            Strategy::Hybrid, Strategy::RingSelfAttention})
    for (Layout layout : {Layout::Zigzag, Layout::Contiguous, Layout::Striped, Layout::Balanced})
      for (int p : {2, 4, 8})
        for (const Mask& mask : masks) {
          if (strategy == Strategy::Hybrid && p == 2) continue;
          SimulationSetup s = small(strategy, layout, p, mask, t);
          s.H = 8;  // Ulysses splits heads over up to 8 ranks
          Simulation sim;
          try {
            sim = simulate(s);
          } catch (const Unsupported&) {
            continue;  // a combination the strategy refuses: the same refusal as a real run
          }
          const auto want = measured_bytes(s);
          for (int r = 0; r < p; ++r) {
            EXPECT_EQ(sim.ranks[r].bytes_fwd, want[r].first)
                << to_string(strategy) << "/" << to_string(layout) << " P=" << p << " " << mask.describe() << " rank " << r;
            EXPECT_EQ(sim.ranks[r].bytes_bwd, want[r].second)
                << to_string(strategy) << "/" << to_string(layout) << " P=" << p << " " << mask.describe() << " rank " << r;
          }
          ++cases;
        }
  EXPECT_GT(cases, 250);
}

TEST(Simulate, EveryStrategyRunsUnderNcclOrderWithTheSameBytes) {
  const int64_t t = 389;
  for (Strategy strategy : {Strategy::Ring, Strategy::AllGatherKV, Strategy::TokenRing, Strategy::Ulysses,
                            Strategy::Hybrid}) {
    SimulationSetup s = small(strategy, Layout::Zigzag, 4, masks::causal_document({0, 100, 103, 250, 389}), t);
    const Simulation plain = simulate(s);
    s.nccl_order = true;
    const Simulation nccl = simulate(s);
    for (int r = 0; r < 4; ++r) {
      EXPECT_EQ(nccl.ranks[r].bytes_fwd, plain.ranks[r].bytes_fwd) << to_string(strategy);
      EXPECT_EQ(nccl.ranks[r].bytes_bwd, plain.ranks[r].bytes_bwd) << to_string(strategy);
      EXPECT_GT(nccl.ranks[r].forward_s, 0.0);
    }
  }
}

TEST(Simulate, AScheduleThatBreaksNcclOrderFailsOnTheSimulatedCluster) {
  // Rank 0 sends tag 1 then tag 2; rank 1 receives tag 2 first. MPI-style tag matching accepts
  // it; under NCCL's order the first messages of the pair are matched and differ: a named error.
  CommOptions o;
  o.timeout = std::chrono::seconds(10);
  auto comms = sim::create_world(2, sim::Network{}, o);
  for (auto& c : comms) c = nccl_order::wrap(c);
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      virtual_clock::RankClock clock;
      virtual_clock::set_current(&clock);
      try {
        const auto meta = at::TensorOptions().device(at::kMeta).dtype(at::kFloat);
        at::Tensor a = at::empty({16}, meta), b = at::empty({32}, meta);
        if (r == 0) {
          auto w1 = comms[0]->send(a, 1, 1);
          auto w2 = comms[0]->send(b, 1, 2);
          w1->wait();
          w2->wait();
        } else {
          comms[1]->recv(b, 0, 2)->wait();
          comms[1]->recv(a, 0, 1)->wait();
        }
      } catch (const CommError& e) {
        errors[r] = e.what();
      }
      virtual_clock::set_current(nullptr);
    });
  for (auto& t : ranks) t.join();
  EXPECT_NE(errors[1].find("tag"), std::string::npos) << errors[1];
}

TEST(Simulate, ComputeOnlyTimeIsTheBusiestRanksAreaAtTheKernelRate) {
  // An infinitely fast network: the forward time is the slowest rank's masked-area FLOPs / rate
  // plus its calls' fixed costs, and nothing is exposed (merges free: an infinite memory rate).
  SimulationSetup s = small(Strategy::Ring, Layout::Zigzag, 4, Mask::causal(), 4096);
  s.network.intra = s.network.inter = {0.0, 1e30};
  s.kernel = {1e12, 1e12, 0.0};
  s.kernel.memory_bytes_per_s = 1e30;
  s.dtype = at::kBFloat16;
  const Simulation sim = simulate(s);
  const double total_flops = 4.0 * static_cast<double>(sim.area) * s.H * s.D;
  for (const auto& r : sim.ranks) {
    EXPECT_NEAR(r.comm_wait_s, 0.0, 1e-12);
    EXPECT_NEAR(r.forward_s, total_flops / 4 / 1e12, 0.02 * total_flops / 4 / 1e12);  // zigzag: balanced
  }
  EXPECT_NEAR(sim.forward_tflops_per_rank(), 1.0, 0.02);
  EXPECT_NEAR(sim.backward_tflops_per_rank(), 1.0, 0.02);
}

TEST(Simulate, TiledKernelsPayWholeTilesThatHoldAVisiblePair) {
  // A causal 256 × 256 block in 128 × 128 tiles: three tiles hold visible pairs, one is empty.
  const BlockView self = BlockView::self(256);
  EXPECT_EQ(simulated::block_area(self, Mask::causal()), 256 * 257 / 2);
  EXPECT_EQ(simulated::tiled_area(self, Mask::causal(), 128, 128), 3 * 128 * 128);
  EXPECT_EQ(simulated::tiled_area(self, Mask::causal(), 0, 0), 256 * 257 / 2);
  // Documents of 16 tokens: every diagonal 64 × 64 tile is paid whole for 4 · 136 visible pairs.
  std::vector<int64_t> cu;
  for (int64_t i = 0; i <= 256; i += 16) cu.push_back(i);
  const Mask docs = masks::causal_document(cu);
  EXPECT_EQ(simulated::block_area(self, docs), 16 * 136);
  EXPECT_EQ(simulated::tiled_area(self, docs, 64, 64), 4 * 64 * 64);
  // Rows out of order (a zigzag shard) are counted as the same pairs.
  const BlockView zig{at::cat({at::arange(0, 64), at::arange(192, 256)}), at::arange(0, 256)};
  EXPECT_EQ(simulated::block_area(zig, Mask::causal()), 64 * 65 / 2 + (193 + 256) * 64 / 2);
}

// A side's tiles by their definition: tiles start at each run of consecutive positions (runs), or
// are consecutive local rows taken as their positions' range (scattered); (range, rows) each.
std::vector<std::pair<RowRange, int64_t>> tiles_by_definition(const at::Tensor& pos, int64_t tile, bool by_runs) {
  const int64_t* p = pos.data_ptr<int64_t>();
  std::vector<std::pair<RowRange, int64_t>> out;
  if (by_runs) {
    for (int64_t i = 0; i < pos.numel();) {
      int64_t j = i + 1;
      while (j < pos.numel() && p[j] == p[j - 1] + 1) ++j;
      for (int64_t t = p[i]; t <= p[j - 1]; t += tile) {
        const int64_t e = std::min(t + tile - 1, p[j - 1]);
        out.push_back({RowRange{t, e}, e - t + 1});
      }
      i = j;
    }
  } else {
    for (int64_t i = 0; i < pos.numel(); i += tile) {
      const int64_t e = std::min(pos.numel(), i + tile);
      const auto [lo, hi] = std::minmax_element(p + i, p + e);
      out.push_back({RowRange{*lo, *hi}, e - i});
    }
  }
  return out;
}

// The tiled area by its definition, every tile pair tried.
int64_t tiled_area_by_definition(const at::Tensor& q_pos, const at::Tensor& k_pos, const Mask& mask, int64_t tq,
                                 int64_t tk, bool by_runs) {
  int64_t area = 0;
  for (const auto& [qr, qn] : tiles_by_definition(q_pos, tq, by_runs))
    for (const auto& [kr, kn] : tiles_by_definition(k_pos, tk, by_runs))
      if (mask.classify(qr, kr) != BlockClass::Empty) area += qn * kn;
  return area;
}

// The working rows of one side by their definition: the rows of its tiles that meet any tile of
// the other side in a visible pair.
int64_t working_rows_by_definition(const at::Tensor& q_pos, const at::Tensor& k_pos, const Mask& mask, int64_t tq,
                                   int64_t tk, bool by_runs, bool of_keys) {
  const auto qs = tiles_by_definition(q_pos, tq, by_runs), ks = tiles_by_definition(k_pos, tk, by_runs);
  int64_t rows = 0;
  for (const auto& [cr, cn] : of_keys ? ks : qs)
    for (const auto& [orr, on] : of_keys ? qs : ks)
      if ((of_keys ? mask.classify(orr, cr) : mask.classify(cr, orr)) != BlockClass::Empty) {
        rows += cn;
        break;
      }
  return rows;
}

TEST(Simulate, TiledAreaOfManyRunsOrScatteredRowsEqualsEveryTilePairTried) {
  // Blocks with more run pairs than the direct loop takes: documents cut into zigzag chunks (many
  // runs, each over a tile long) and striped rows (scattered). The indexed sums must equal the
  // definition on every family.
  std::mt19937_64 rng(5);
  const int64_t t = 40000;
  std::vector<int64_t> cu{0};
  while (cu.back() < t) cu.push_back(std::min(t, cu.back() + 50 + int64_t(rng() % 3000)));
  std::vector<int64_t> chunks{0};  // runs of 150..450 rows, shuffled
  while (chunks.back() < t) chunks.push_back(std::min(t, chunks.back() + 150 + int64_t(rng() % 300)));
  std::vector<int64_t> order(chunks.size() - 1);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  auto in_order = [&] {
    std::vector<at::Tensor> parts;
    for (int64_t c : order) parts.push_back(at::arange(chunks[c], chunks[c + 1]));
    return at::cat(parts);
  };
  const at::Tensor runs = in_order();
  std::shuffle(order.begin(), order.end(), rng);
  const at::Tensor runs2 = in_order();
  const at::Tensor striped = at::cat({at::arange(1, 9000, 3), at::arange(0, 9000, 3)});
  for (const std::string& family : masks::family_names()) {
    const Mask m = masks::make(family, t, cu, 700, 90);
    SCOPED_TRACE(family);
    const BlockView many{runs, runs2};
    EXPECT_EQ(simulated::tiled_area(many, m, 128, 64), tiled_area_by_definition(many.q_pos, many.k_pos, m, 128, 64, true));
    const Mask ms = masks::make(family, 9000, {0, 2000, 5000, 9000}, 700, 90);
    const BlockView scattered{striped, striped};
    EXPECT_EQ(simulated::tiled_area(scattered, ms, 64, 64),
              tiled_area_by_definition(striped, striped, ms, 64, 64, false));
    for (bool of_keys : {false, true}) {
      SCOPED_TRACE(of_keys ? "key rows" : "query rows");
      EXPECT_EQ(simulated::working_rows(many, m, 128, 64, of_keys),
                working_rows_by_definition(many.q_pos, many.k_pos, m, 128, 64, true, of_keys));
      EXPECT_EQ(simulated::working_rows(scattered, ms, 64, 64, of_keys),
                working_rows_by_definition(striped, striped, ms, 64, 64, false, of_keys));
      // Few runs (every pair tried): a zigzag shard against the whole sequence and a ring step.
      const BlockView zigzag{at::cat({at::arange(4000, 7000), at::arange(33000, 36000)}), at::arange(0, t)};
      const BlockView step{at::cat({at::arange(4000, 7000), at::arange(33000, 36000)}), at::arange(10000, 13001)};
      for (const BlockView& v : {zigzag, step})
        EXPECT_EQ(simulated::working_rows(v, m, 128, 64, of_keys),
                  working_rows_by_definition(v.q_pos, v.k_pos, m, 128, 64, true, of_keys));
    }
  }
}

TEST(Simulate, WorkingRowsAreTheRowsOfTilesWithAVisiblePair) {
  const BlockView self = BlockView::self(256);
  EXPECT_EQ(simulated::working_rows(self, Mask::causal(), 128, 128, false), 256);
  EXPECT_EQ(simulated::working_rows(self, Mask::causal(), 128, 128, true), 256);
  // Queries [128, 256) against keys [0, 512): one query tile; key tiles [0, 128) and [128, 256) only.
  const BlockView later{at::arange(128, 256), at::arange(0, 512)};
  EXPECT_EQ(simulated::working_rows(later, Mask::causal(), 128, 128, false), 128);
  EXPECT_EQ(simulated::working_rows(later, Mask::causal(), 128, 128, true), 256);
  // A run's short last tile counts its rows: queries [300, 500) are tiles of 128 and 72 rows.
  EXPECT_EQ(simulated::working_rows(BlockView{at::arange(300, 500), at::arange(0, 100)}, Mask::causal(), 128, 128,
                                    false),
            200);
  // Every key after every query: nothing works; no tiles: nothing counted.
  EXPECT_EQ(simulated::working_rows(BlockView::contiguous(0, 128, 1000, 128), Mask::causal(), 128, 128, false), 0);
  EXPECT_EQ(simulated::working_rows(self, Mask::causal(), 0, 0, false), 0);
  // A query tile that sees two key runs is one thread block, not two.
  const BlockView two_runs{at::arange(1000, 1128), at::cat({at::arange(0, 128), at::arange(500, 628)})};
  EXPECT_EQ(simulated::working_rows(two_runs, Mask::causal(), 128, 128, false), 128);
  EXPECT_EQ(simulated::working_rows(two_runs, Mask::causal(), 128, 128, true), 256);
}

TEST(Simulate, EachWorkingTilesStartUpIsChargedAtTheKernelRate) {
  // A full block of 1024 queries × 512 keys, H 2, D 64, in 128 × 128 tiles: 32 tiles per head,
  // 8 working query tiles forward, 4 working key tiles backward.
  virtual_clock::RankClock clock;
  clock.kernel = {.forward_flops_per_s = 1e12, .backward_flops_per_s = 5e11, .per_call_s = 1e-6, .tile_q = 128,
                  .tile_k = 128, .forward_setup_tiles = 3, .backward_setup_tiles = 2};
  virtual_clock::set_current(&clock);
  const auto meta = at::TensorOptions().dtype(at::kBFloat16).device(at::kMeta);
  const at::Tensor q = at::empty({1024, 2, 64}, meta), k = at::empty({512, 2, 64}, meta);
  const BlockView view = BlockView::contiguous(0, 1024, 0, 512);
  const AttentionOutput out = simulated::forward(q, k, k, view, Mask::full());
  const double tile_flops = 4.0 * 128 * 128 * 2 * 64;
  EXPECT_NEAR(clock.compute_s, 1e-6 + (32 + 3 * 8) * tile_flops / 1e12, 1e-12);
  const double after_forward = clock.compute_s;
  simulated::backward({q, q, k, k, out.lse, out.out, {}}, view, Mask::full());
  EXPECT_NEAR(clock.compute_s - after_forward, 1e-6 + (32 + 2 * 4) * 2.5 * tile_flops / 5e11, 1e-12);
  virtual_clock::set_current(nullptr);
}

// About half the positions of [0, t): runs of 1..max_run consecutive positions, every other run
// of a shuffled cut kept, in shuffled order.
at::Tensor shuffled_runs(std::mt19937_64& rng, int64_t t, int64_t max_run) {
  std::vector<int64_t> cuts{0};
  while (cuts.back() < t) cuts.push_back(std::min(t, cuts.back() + 1 + int64_t(rng() % max_run)));
  std::vector<int64_t> order(cuts.size() - 1);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < order.size(); i += 2) parts.push_back(at::arange(cuts[order[i]], cuts[order[i] + 1]));
  return at::cat(parts);
}

TEST(Simulate, TiledAreaOfLocalRowsPaysEveryTileOfLocalRowsWithAVisiblePair) {
  // The CPU kernel's tiling: tiles of consecutive local rows, which may span runs whose ends do
  // not line up with them (rows cut at document edges). Checked pair by pair on every family.
  std::mt19937_64 rng(11);
  const int64_t t = 1200;
  std::vector<int64_t> cu{0};
  while (cu.back() < t) cu.push_back(std::min(t, cu.back() + 40 + int64_t(rng() % 400)));
  const at::Tensor qp = shuffled_runs(rng, t, 150), kp = shuffled_runs(rng, t, 150);
  const int64_t tq = 64, tk = 32;
  for (const std::string& family : masks::family_names()) {
    SCOPED_TRACE(family);
    const Mask m = masks::make(family, t, cu, 100, 30);
    const int64_t* q = qp.data_ptr<int64_t>();
    const int64_t* k = kp.data_ptr<int64_t>();
    int64_t want = 0;
    for (int64_t i = 0; i < qp.numel(); i += tq)
      for (int64_t j = 0; j < kp.numel(); j += tk) {
        const int64_t ie = std::min(qp.numel(), i + tq), je = std::min(kp.numel(), j + tk);
        bool any = false;
        for (int64_t a = i; a < ie && !any; ++a)
          for (int64_t b = j; b < je && !any; ++b) any = m.area(q[a], q[a] + 1, k[b], k[b] + 1) == 1;
        if (any) want += (ie - i) * (je - j);
      }
    const BlockView view{qp, kp};
    EXPECT_EQ(simulated::tiled_area(view, m, tq, tk, true), want);
    // Tiles restarted at every run pay a different area on such rows: the two models differ.
    if (family == "causal_document") EXPECT_NE(simulated::tiled_area(view, m, tq, tk, false), want);
  }
}

TEST(Simulate, PartialTilesOfLocalRowsPayTheirTrimmedSlices) {
  // The CPU kernel works a partial tile in slices of `sub` query rows, each cut to its first and
  // last row that see a position in the tile's key range and to the columns between the first
  // and last such position they see. By that definition, pair by pair, on every family.
  std::mt19937_64 rng(17);
  const int64_t t = 900, tq = 64, tk = 32, sub = 16;
  std::vector<int64_t> cu{0};
  while (cu.back() < t) cu.push_back(std::min(t, cu.back() + 40 + int64_t(rng() % 300)));
  const at::Tensor qp = shuffled_runs(rng, t, 120), kp = shuffled_runs(rng, t, 120);
  const int64_t* q = qp.data_ptr<int64_t>();
  const int64_t* k = kp.data_ptr<int64_t>();
  for (const std::string& family : masks::family_names()) {
    SCOPED_TRACE(family);
    const Mask m = masks::make(family, t, cu, 100, 30);
    auto sees = [&](int64_t row, int64_t key) { return m.area(row, row + 1, key, key + 1) == 1; };
    int64_t want = 0, whole = 0;
    for (int64_t i = 0; i < qp.numel(); i += tq)
      for (int64_t j = 0; j < kp.numel(); j += tk) {
        const int64_t ie = std::min(qp.numel(), i + tq), je = std::min(kp.numel(), j + tk);
        int64_t visible = 0;
        for (int64_t a = i; a < ie; ++a)
          for (int64_t b = j; b < je; ++b) visible += sees(q[a], k[b]);
        if (visible == 0) continue;
        whole += (ie - i) * (je - j);
        if (visible == (ie - i) * (je - j)) {
          want += visible;
          continue;
        }
        const auto [kmin, kmax] = std::minmax_element(k + j, k + je);
        for (int64_t s0 = i; s0 < ie; s0 += sub) {
          int64_t first = -1, last = -1, lo = *kmax + 1, hi = *kmin - 1;
          for (int64_t a = s0; a < std::min(ie, s0 + sub); ++a)
            for (int64_t p = *kmin; p <= *kmax; ++p)
              if (sees(q[a], p)) {
                if (first < 0) first = a;
                last = a + 1;
                lo = std::min(lo, p);
                hi = std::max(hi, p);
              }
          if (first < 0) continue;
          int64_t c0 = j, c1 = je;
          while (c0 < c1 && (k[c0] < lo || k[c0] > hi)) ++c0;
          while (c1 > c0 && (k[c1 - 1] < lo || k[c1 - 1] > hi)) --c1;
          want += (last - first) * (c1 - c0);
        }
      }
    const BlockView view{qp, kp};
    EXPECT_EQ(simulated::tiled_area(view, m, tq, tk, true, sub), want);
    EXPECT_LE(want, whole);
    if (family == "causal_document") EXPECT_LT(want, whole);  // edge tiles are trimmed
  }
}

TEST(Simulate, ASlowNetworkIsExposedAndAFastOneHidden) {
  SimulationSetup s = small(Strategy::Ring, Layout::Zigzag, 4, Mask::causal(), 8192);
  s.H = 8;
  s.H_kv = 8;
  s.D = 64;
  s.kernel = {1e12, 1e12, 0.0};
  s.network.intra = {1e-6, 1e8};  // 100 MB/s: transfers dominate
  const Simulation slow = simulate(s);
  s.network.intra = {1e-6, 1e15};
  const Simulation fast = simulate(s);
  for (int r = 0; r < 4; ++r) {
    // Ring forward: each rank receives P-1 K,V blocks of T/P rows, one after another.
    const double block = 2.0 * 2048 * 8 * 64 * 2;  // K and V, bf16
    EXPECT_GE(slow.ranks[r].forward_s, 3 * block / 1e8);
    EXPECT_GT(slow.ranks[r].comm_wait_s, 0.5 * slow.ranks[r].forward_s);
    EXPECT_LT(fast.ranks[r].comm_wait_s, 0.01 * fast.ranks[r].forward_s);
  }
  EXPECT_GT(slow.forward_s, 10 * fast.forward_s);
}

TEST(Simulate, TopologyChargesCrossNodeLinks) {
  // 8 ranks as 2 nodes of 4: the ring crosses InfiniBand twice; all in one node it never does.
  SimulationSetup s = small(Strategy::Ring, Layout::Zigzag, 8, Mask::causal(), 16384);
  s.H = s.H_kv = 8;
  s.D = 64;
  s.kernel = {1e15, 1e15, 0.0};  // communication only
  s.network.ranks_per_node = 8;
  const double one_node = simulate(s).forward_s;
  s.network.ranks_per_node = 4;
  const double two_nodes = simulate(s).forward_s;
  const double ratio = s.network.intra.bytes_per_s / s.network.inter.bytes_per_s;
  EXPECT_GT(two_nodes, 0.5 * ratio * one_node);
}

// Each rank's clock after one all_gather of `rows` rows of 1 KiB (meta tensors), rank r posting
// it at r microseconds.
std::vector<double> all_gather_ends(int P, const sim::Network& net, const std::vector<int64_t>& rows) {
  auto comms = sim::create_world(P, net);
  std::vector<double> ends(P);
  std::vector<std::thread> threads;
  for (int r = 0; r < P; ++r)
    threads.emplace_back([&, r] {
      virtual_clock::RankClock clock;
      clock.now = r * 1e-6;
      virtual_clock::set_current(&clock);
      const auto meta = at::TensorOptions().device(at::kMeta).dtype(at::kByte);
      const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t{0});
      at::Tensor in = at::empty({rows[r], 1024}, meta), out = at::empty({total, 1024}, meta);
      comms[r]->all_gather(out, in, rows)->wait();
      ends[r] = clock.now;
      virtual_clock::set_current(nullptr);
    });
  for (auto& t : threads) t.join();
  return ends;
}

TEST(Simulate, AnAllGatherTakesNcclsRingsFromItsLastPoster) {
  sim::Network net;
  net.ranks_per_node = 4;
  const int P = 8;
  const double part = 1024.0 * 1024;  // 1024 rows of 1 KiB per rank
  // Two nodes of 4: one ring per NIC; each NIC carries 7 parts / 4, each GPU forwards 7 · 3/4 over
  // NVLink. It starts when the last rank (7 us) posts.
  auto two_nodes = [&](double moved) {
    return 7e-6 + std::max(moved / (4 * net.inter.bytes_per_s), moved * 3 / (4 * net.intra.bytes_per_s)) +
           7 * net.inter.latency_s;
  };
  for (double end : all_gather_ends(P, net, std::vector<int64_t>(P, 1024))) EXPECT_NEAR(end, two_nodes(7 * part), 1e-12);
  // Uneven parts (grouped broadcasts on the NCCL backend): the busiest link carries every part
  // but the smallest: 8.5 parts in all, less the half part of rank 5.
  std::vector<int64_t> uneven(P, 1024);
  uneven[0] = 2048;
  uneven[5] = 512;
  for (double end : all_gather_ends(P, net, uneven)) EXPECT_NEAR(end, two_nodes(8 * part), 1e-12);
  // One node: seven NVLink steps.
  net.ranks_per_node = 8;
  const double one_node = 7e-6 + 7 * part / net.intra.bytes_per_s + 7 * net.intra.latency_s;
  for (double end : all_gather_ends(P, net, std::vector<int64_t>(P, 1024))) EXPECT_NEAR(end, one_node, 1e-12);
}

TEST(Simulate, ThirtyTwoRanksAndHalfAMillionTokens) {
  SimulationSetup s;
  s.T = 1 << 19;
  s.H = 64;
  s.H_kv = 8;
  s.D = 128;
  s.P = 32;
  s.options.strategy = Strategy::Ring;
  s.options.layout = Layout::Zigzag;
  const Simulation sim = simulate(s);
  EXPECT_EQ(sim.ranks.size(), 32u);
  // Each rank's forward bytes are the byte model's (bf16 K,V rows some later rank sees).
  for (int r = 0; r < s.P; ++r) {
    const ShardPlan plan = ShardPlan::for_mask(s.T, s.mask, s.options.layout, s.P, r);
    EXPECT_EQ(sim.ranks[r].bytes_fwd, forward_bytes_formula(Strategy::Ring, plan, s.mask, r, s.H, s.H_kv, s.D, 2))
        << "rank " << r;
  }
  EXPECT_GT(sim.forward_tflops_per_rank(), 0.0);
  EXPECT_LT(sim.forward_tflops_per_rank(), s.kernel.forward_flops_per_s / 1e12);
}

TEST(Simulate, BadSetupsAreNamed) {
  SimulationSetup s = small(Strategy::Ring, Layout::Zigzag, 4, Mask::causal(), 2);
  EXPECT_THROW(
      try { simulate(s); } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("cannot be split over P = 4"), std::string::npos) << e.what();
        throw;
      },
      InvalidArgument);
  s = small(Strategy::Ring, Layout::Zigzag, 2, Mask::causal(), 64);
  s.H_kv = 3;
  EXPECT_THROW(simulate(s), InvalidArgument);
  // rsa keeps its paper's masks: a document mask is refused by name, as in a real run.
  s = small(Strategy::RingSelfAttention, Layout::Zigzag, 2, masks::causal_document({0, 30, 64}), 64);
  EXPECT_THROW(
      try { simulate(s); } catch (const Unsupported& e) {
        EXPECT_NE(std::string(e.what()).find("rsa"), std::string::npos) << e.what();
        throw;
      },
      Unsupported);
}

TEST(Simulate, RsaIsTimedOpByOpAsThePlannerCountsIt) {
  // rsa's products and passes are metered on the clock; rsa_dense_cost (the planner's count) must
  // give the same compute on every rank, for full and causal, with GQA (KV heads repeated).
  for (const Mask& mask : {Mask::full(), Mask::causal()}) {
    SimulationSetup s = small(Strategy::RingSelfAttention, Layout::Zigzag, 3, mask, 389);
    s.kernel.dense_flops_per_s = 2e9;
    s.kernel.memory_bytes_per_s = 5e9;
    s.kernel.first_touch_bytes_per_s = 3e9;
    const Simulation sim = simulate(s);
    const ShardPlan plan = ShardPlan::for_mask(s.T, mask, s.options.layout, s.P, 0);
    for (int r = 0; r < s.P; ++r) {
      const DenseCost c = rsa_dense_cost(s.H, plan.local_rows(r), s.T, s.D, mask.is_causal(), 4);
      const double want = c.flops / 2e9 + c.bytes / 5e9 + c.fresh_bytes / 3e9;
      EXPECT_NEAR(sim.ranks[r].compute_s, want, 1e-9 * want) << mask.describe() << " rank " << r;
    }
    // The planner charges the busiest rank the same at the same rates.
    Problem pr;
    pr.T = s.T, pr.H = s.H, pr.H_kv = s.H_kv, pr.D = s.D, pr.P = s.P, pr.elem_bytes = 4;
    pr.given_mask = mask;
    pr.only_strategy = Strategy::RingSelfAttention;
    pr.only_layout = Layout::Zigzag;
    pr.dense_gflops = 2, pr.memory_gbps = 5, pr.first_touch_gbps = 3;
    const auto preds = plan_strategies(pr, network_preset("this-machine"));
    ASSERT_FALSE(preds.empty());
    double busiest = 0;
    for (const auto& rank : sim.ranks) busiest = std::max(busiest, rank.compute_s);
    EXPECT_NEAR(preds.front().compute_s, busiest, 1e-9 * busiest) << mask.describe();
  }
}

}  // namespace
}  // namespace longhaul

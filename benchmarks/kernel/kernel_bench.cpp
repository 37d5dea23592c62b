#include "benchmarks/kernel/kernel_bench.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

#include "attention/attention.h"
#include "benchmarks/common/compare.h"
#include "core/resident_memory.h"
#include "benchmarks/kernel/backends.h"
#include "benchmarks/kernel/check.h"
#include "benchmarks/kernel/cuda_parts.h"
#include "benchmarks/kernel/sdpa_baseline.h"
#include "benchmarks/kernel/sgemm.h"
#include "longhaul/config.h"
#include "core/errors.h"
#if LONGHAUL_WITH_CUDA
#include "attention/cuda/cuda_attention.h"
#endif

namespace longhaul::bench {
namespace {

// ---- names ------------------------------------------------------------------------------------
struct DtypeName {
  const char* name;
  const char* alias;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {{"fp32", "float32", at::kFloat}, {"bf16", "bfloat16", at::kBFloat16},
                                 {"fp16", "float16", at::kHalf}, {"fp64", "float64", at::kDouble}};

const DtypeName& parse_dtype(const std::string& s) {
  for (const auto& d : kDtypes)
    if (s == d.name || s == d.alias) return d;
  throw InvalidArgument("bench kernel: unknown dtype '" + s + "', expected fp32, bf16, fp16 or fp64");
}

void check_pass(const std::string& s) {
  LH_CHECK(s == "fwd" || s == "fwd+bwd", "bench kernel: unknown pass '", s, "', expected fwd or fwd+bwd");
}

void require_cuda(const std::string& backend) {
#if !LONGHAUL_WITH_CUDA
  throw Unsupported("bench kernel: backend " + backend + " needs CUDA tensors, but this build of longhaul has no "
                    "CUDA (LONGHAUL_WITH_CUDA=OFF); use --backends cpu");
#endif
  if (!at::hasCUDA())
    throw Unsupported("bench kernel: backend " + backend + " needs CUDA tensors, but no CUDA device is available "
                      "here (at::hasCUDA() is false); use --backends cpu");
}

// ---- configurations ---------------------------------------------------------------------------
struct Config {
  std::string backend, mask, dtype;  // dtype: the short name
  int64_t t, h, h_kv, d;
  bool fwd = false, fwd_bwd = false;

  auto key() const { return std::tie(backend, mask, t, h, h_kv, d, dtype); }
  c10::Device device() const { return kernel_backend(backend).device; }
};

// The reference materialises H×T×T float64 scores several times over.
constexpr int64_t kReferenceMaxScores = int64_t(1) << 27;

std::vector<Config> expand(const std::vector<KernelTarget>& targets) {
  LH_CHECK(!targets.empty(), "bench kernel: nothing to run (no targets)");
  std::vector<Config> configs;
  for (const auto& tg : targets) {
    LH_CHECK(!tg.masks.empty() && !tg.seq_lens.empty() && !tg.heads.empty() && !tg.kv_heads.empty() &&
                 !tg.head_dims.empty() && !tg.dtypes.empty() && !tg.backends.empty() && !tg.passes.empty(),
             "bench kernel: every dimension of a sweep needs at least one value");
    for (const auto& p : tg.passes) check_pass(p);
    for (const auto& backend : tg.backends)
      for (const auto& mask : tg.masks)
        for (int64_t t : tg.seq_lens)
          for (int64_t h : tg.heads)
            for (int64_t kv : tg.kv_heads)
              for (int64_t d : tg.head_dims)
                for (const auto& dtype : tg.dtypes) {
                  Config c{backend, mask, parse_dtype(dtype).name, t, h, kv == 0 ? h : kv, d};
                  for (const auto& p : tg.passes) (p == "fwd" ? c.fwd : c.fwd_bwd) = true;
                  auto same = std::find_if(configs.begin(), configs.end(),
                                           [&](const Config& o) { return o.key() == c.key(); });
                  if (same == configs.end()) {
                    configs.push_back(c);
                  } else {
                    same->fwd = same->fwd || c.fwd;
                    same->fwd_bwd = same->fwd_bwd || c.fwd_bwd;
                  }
                }
  }
  return configs;
}

void validate(const Config& c) {
  check_mask_name(c.mask);
  const KernelBackend kb = kernel_backend(c.backend);
  LH_CHECK(c.t > 0 && c.h > 0 && c.h_kv > 0 && c.d > 0, "bench kernel: T, H, H_kv and D must be positive, got T=",
           c.t, " H=", c.h, " H_kv=", c.h_kv, " D=", c.d);
  LH_CHECK(c.h % c.h_kv == 0, "bench kernel: H_kv=", c.h_kv, " does not divide H=", c.h, " (H % H_kv must be 0)");
  LH_CHECK(c.backend != "reference" || c.h * c.t * c.t <= kReferenceMaxScores, "bench kernel: backend reference "
           "materialises H×T×T float64 scores; H=", c.h, ", T=", c.t, " is too large (H·T² ≤ 2^27, e.g. T ≤ 4096 "
           "with H=8)");
  if (kb.needs_cuda()) require_cuda(c.backend);
}

double gflops(double flops, double ms) { return flops / (ms * 1e-3) / 1e9; }

// ---- one configuration ------------------------------------------------------------------------
struct Measured {
  int64_t area = 0;
  double fwd_ms = NAN, fwd_bwd_ms = NAN;
  double sdpa_fwd_ms = NAN, sdpa_fwd_bwd_ms = NAN;
  double bare_fwd_ms = NAN, bare_fwd_bwd_ms = NAN;  // the bare ATen flash kernel (CUDA, full/causal)
  double rss_mib = NAN;
  int64_t runs = 0;
  int64_t wrong_fwd = -1, wrong_fwd_bwd = -1;
  std::string note;
};

Measured measure(const Config& c, const KernelBenchOptions& o) {
  const KernelBackend kb = kernel_backend(c.backend);
  const at::ScalarType dtype = parse_dtype(c.dtype).type;
  const c10::Device device = c.device();
  const Mask mask = make_mask(c.mask, c.t, o.masks);
  const BlockView view = BlockView::self(c.t);
  Measured m;
  m.area = mask.area(0, c.t, 0, c.t);

  // Drawn where they are used, reseeded for every configuration.
  at::Generator gen = seeded_generator(device, o.seed);
  auto normal = [&](int64_t heads) {
    return at::randn({c.t, heads, c.d}, gen, at::TensorOptions(at::kFloat).device(device)).to(dtype);
  };
  const at::Tensor q = normal(c.h), k = normal(c.h_kv), v = normal(c.h_kv), dout = normal(c.h);

  {  // ours, and on CUDA the bare flash kernel interleaved run by run
    const PeakRssGrowth rss;
    std::optional<BareFlash> bare;
    if (bare_flash_applies(q, c.mask)) bare.emplace(q, k, v, dout, c.mask == "causal");
    if (bare) m.note += std::string("bare kernel: ") + bare->kernel() + "; ";
#if LONGHAUL_WITH_CUDA
    if (q.is_cuda())
      m.note += "route: " + cuda::route_summary(q, k, view, mask, 1.0 / std::sqrt(double(c.d))) + "; ";
#endif
    const PhaseSamples s = time_phases(o.timing, [&] {
      Stopwatch watch(device);
      AttentionOutput res = kb.forward(q, k, v, view, mask);
      const double fwd = watch.lap();
      double bwd = 0, bare_fwd = NAN, bare_bwd = NAN;
      if (c.fwd_bwd) {
        // .to: the reference returns float64 out whatever the input dtype (a no-op otherwise).
        AttentionGrads g = kb.backward(dout, q, k, v, res.out.to(dtype), res.lse, view, mask);
        bwd = watch.lap();
      }
      if (bare) {
        bare->forward();
        bare_fwd = watch.lap();
        if (c.fwd_bwd) {
          bare->backward();
          bare_bwd = watch.lap();
        }
      }
      return std::vector<double>{fwd, bwd, bare_fwd, bare_bwd};
    });
    m.runs = static_cast<int64_t>(s.size());
    m.fwd_ms = median_of_first_phases(s, 1);
    if (c.fwd_bwd) m.fwd_bwd_ms = median_of_first_phases(s, 2);
    if (bare) {
      std::vector<double> f, fb;
      for (const auto& run : s) f.push_back(run[2]), fb.push_back(run[2] + run[3]);
      m.bare_fwd_ms = median(f);
      if (c.fwd_bwd) m.bare_fwd_bwd_ms = median(fb);
    }
    if (device.is_cpu()) m.rss_mib = rss.mib();
    if (device.is_cpu() && !rss.exact()) m.note += "rss growth is a lower bound (peak not resettable); ";
  }

  if (!o.sdpa) {
    m.note += "sdpa off; ";
  } else if (c.t > o.sdpa_max_t) {
    m.note += "sdpa skipped: T > --sdpa-max-t " + std::to_string(o.sdpa_max_t) + "; ";
  } else {
    const SdpaTimes st = time_sdpa({q, k, v, dout, c.mask, &mask}, c.fwd_bwd, o.timing);
    m.sdpa_fwd_ms = st.forward_ms;
    m.sdpa_fwd_bwd_ms = st.forward_backward_ms;
    if (!sdpa_expresses(c.mask)) m.note += "sdpa with a dense bool mask; ";
  }

  if (o.check) {
    const int64_t small_t = std::min(c.t, o.check_t);
    CheckCase cc{c.backend, device, dtype, small_t, c.h, c.h_kv, c.d, make_scaled_mask(c.mask, c.t, small_t, o.masks),
                 c.fwd_bwd, o.seed + 1};
    const CheckResult r = check_against_reference(cc);
    // And at this size, on sampled rows of the very inputs measured (its own forward and backward:
    // keeping a timed run's outputs would hold them through the next run and change its memory).
    const CheckResult s = check_sampled_rows({kb, q, k, v, dout, mask, c.fwd_bwd});
    if (!s.note.empty()) m.note += s.note + "; ";
    m.wrong_fwd = r.wrong_forward + s.wrong_forward;
    m.wrong_fwd_bwd = r.wrong_forward + r.wrong_backward + s.wrong_forward + s.wrong_backward;
  } else {
    m.note += "unchecked; ";
  }
  if (m.note.size() >= 2) m.note.resize(m.note.size() - 2);
  return m;
}

Row make_row(const Config& c, const std::string& pass, const Measured& m, double sgemm_gflops) {
  const double f_fwd = 4.0 * double(m.area) * double(c.h) * double(c.d);
  const bool bwd = pass == "fwd+bwd";
  const double flops = bwd ? 3.5 * f_fwd : f_fwd;  // F_bwd = 2.5 · F_fwd
  const double ms = bwd ? m.fwd_bwd_ms : m.fwd_ms, sdpa_ms = bwd ? m.sdpa_fwd_bwd_ms : m.sdpa_fwd_ms;
  const double bare_ms = bwd ? m.bare_fwd_bwd_ms : m.bare_fwd_ms;
  const double rate = gflops(flops, ms);
  return Row()
      .add("backend", c.backend)
      .add("mask", c.mask)
      .add("T", c.t)
      .add("H", c.h)
      .add("H_kv", c.h_kv)
      .add("D", c.d)
      .add("dtype", c.dtype)
      .add("pass", pass)
      .add("time_ms", ms)
      .add("gflops", rate)
      .add("sdpa_time_ms", sdpa_ms)
      .add("ratio_vs_sdpa", sdpa_ms / ms)
      .add("sgemm_fraction", rate / sgemm_gflops)
      .add("bare_time_ms", bare_ms)
      .add("time_over_bare", ms / bare_ms)
      .add("vs_causal", NAN)  // filled in once every row is known
      .add("area", m.area)
      .add("peak_rss_growth_mib", m.rss_mib)
      .add("iters", m.runs)
      .add("wrong", bwd ? m.wrong_fwd_bwd : m.wrong_fwd)
      .add("note", m.note.empty() ? std::string("-") : m.note);
}

Row sgemm_row(const std::string& backend, const SgemmYardstick& y) {
  const SgemmRate& s = y.best;
  return Row()
      .add("backend", backend)
      .add("mask", std::string("-"))
      .add("T", s.n)
      .add("H", int64_t(1))
      .add("H_kv", int64_t(1))
      .add("D", s.n)
      .add("dtype", std::string("fp32"))
      .add("pass", std::string("fwd"))
      .add("time_ms", s.time_ms)
      .add("gflops", s.gflops)
      .add("sdpa_time_ms", NAN)
      .add("ratio_vs_sdpa", NAN)
      .add("sgemm_fraction", 1.0)
      .add("bare_time_ms", NAN)
      .add("time_over_bare", NAN)
      .add("vs_causal", NAN)
      .add("area", s.n * s.n)
      .add("peak_rss_growth_mib", NAN)
      .add("iters", int64_t(0))
      .add("wrong", int64_t(0))
      .add("note", "best square float32 GEMM, 2n^3 flops: " + y.summary());
}

template <typename T>
const T& cell(const Row& r, const char* key) {
  return std::get<T>(*r.find(key));
}

// vs_causal: a row's GFLOP/s over the causal row's with the same backend, T, heads, D, dtype and
// pass; a summary line for every other mask that has one, saying so where either row's check found
// wrong elements (a fast wrong answer is no measurement).
std::vector<std::string> compare_with_causal(std::vector<Row>& rows) {
  using Key = std::tuple<std::string, int64_t, int64_t, int64_t, int64_t, std::string, std::string>;
  auto key = [](const Row& r) {
    return Key{cell<std::string>(r, "backend"), cell<int64_t>(r, "T"), cell<int64_t>(r, "H"),
               cell<int64_t>(r, "H_kv"), cell<int64_t>(r, "D"), cell<std::string>(r, "dtype"),
               cell<std::string>(r, "pass")};
  };
  std::map<Key, double> causal;
  std::map<Key, int64_t> causal_area, causal_wrong;
  for (const auto& r : rows)
    if (cell<std::string>(r, "mask") == "causal") {
      causal[key(r)] = cell<double>(r, "gflops");
      causal_area[key(r)] = cell<int64_t>(r, "area");
      causal_wrong[key(r)] = cell<int64_t>(r, "wrong");
    }
  std::vector<std::string> lines;
  for (auto& r : rows) {
    auto it = causal.find(key(r));
    if (it == causal.end()) continue;
    const double ratio = cell<double>(r, "gflops") / it->second;
    for (auto& [k, v] : r.cells)
      if (k == "vs_causal") v = ratio;
    const auto& mask = cell<std::string>(r, "mask");
    if (mask == "causal") continue;
    std::ostringstream os;
    os.precision(3);
    os << "# " << mask << " vs causal, " << cell<std::string>(r, "backend") << " T=" << cell<int64_t>(r, "T")
       << " H=" << cell<int64_t>(r, "H") << "/" << cell<int64_t>(r, "H_kv") << " D=" << cell<int64_t>(r, "D") << " "
       << cell<std::string>(r, "dtype") << " " << cell<std::string>(r, "pass") << ": " << cell<double>(r, "gflops")
       << " vs " << it->second << " GFLOP/s = " << ratio << "x the causal rate";
    // A document mask whose sequence holds one document (a mix of long documents cut to a short T)
    // has causal's or full's area: its row measures no documents.
    const int64_t area = cell<int64_t>(r, "area"), t = cell<int64_t>(r, "T");
    if (mask.find("documents") != std::string::npos && (area == causal_area[key(r)] || area == t * t))
      os << " (one document at this T: not a documents measurement)";
    const int64_t wrong = cell<int64_t>(r, "wrong"), wrong_causal = causal_wrong[key(r)];
    if (wrong > 0 || wrong_causal > 0)
      os << " (WRONG: " << wrong << " wrong elements in this row's check, " << wrong_causal << " in causal's)";
    lines.push_back(os.str());
  }
  return lines;
}

}  // namespace

KernelBenchOptions default_kernel_options() {
  KernelBenchOptions o;
  const std::vector<std::string> both{"fwd", "fwd+bwd"};
  o.targets = {
      // (d) long sequence, one head, resident-memory growth; first, before the allocator holds
      // memory of other rows. SDPA skipped (T > sdpa_max_t).
      {{"causal"}, {65536}, {1}, {0}, {64}, {"fp32"}, {"cpu"}, {"fwd+bwd"}},
      // (a) and (b)
      {{"causal"}, {8192}, {8}, {0}, {64}, {"fp32"}, {"cpu"}, both},
      {{"full", "causal"}, {4096, 8192}, {8}, {0}, {64, 128}, {"fp32"}, {"cpu"}, both},
      // (c) sparse masks against causal at the same T
      {{"causal", "documents", "causal_window"}, {16384}, {4}, {0}, {64}, {"fp32"}, {"cpu"}, both},
  };
  o.timing = {1, 5, 10.0};
  return o;
}

KernelBenchOptions quick_kernel_options() {
  KernelBenchOptions o;
  o.targets = {{mask_names(), {512}, {2}, {0, 1}, {64}, {"fp32"}, {"cpu"}, {"fwd", "fwd+bwd"}},
               {{"causal"}, {1024}, {4}, {0}, {64}, {"fp32"}, {"cpu"}, {"fwd", "fwd+bwd"}}};
  o.masks.doc_min = 64;
  o.masks.doc_max = 256;
  o.masks.window_left = 128;
  o.timing = {1, 3, 2.0};
  o.check_t = 256;
  o.sgemm_n = 512;
  return o;
}

void override_targets(std::vector<KernelTarget>& targets, const KernelTarget& given) {
  for (auto& t : targets) {
    if (!given.masks.empty()) t.masks = given.masks;
    if (!given.seq_lens.empty()) t.seq_lens = given.seq_lens;
    if (!given.heads.empty()) t.heads = given.heads;
    if (!given.kv_heads.empty()) t.kv_heads = given.kv_heads;
    if (!given.head_dims.empty()) t.head_dims = given.head_dims;
    if (!given.dtypes.empty()) t.dtypes = given.dtypes;
    if (!given.backends.empty()) t.backends = given.backends;
    if (!given.passes.empty()) t.passes = given.passes;
  }
}

KernelBenchResult run_kernel_bench(const KernelBenchOptions& o) {
  LH_CHECK(o.check_t > 0, "bench kernel: --check-t must be positive, got ", o.check_t);
  const std::vector<Config> configs = expand(o.targets);
  for (const auto& c : configs) validate(c);
  make_mask("documents", 1, o.masks);  // checks the document and window options before any run
  make_mask("causal_window", 1, o.masks);

  std::vector<std::pair<Config, Measured>> measured;
  for (size_t i = 0; i < configs.size(); ++i) {
    const Config& c = configs[i];
    if (o.progress)
      o.progress(i + 1, configs.size(),
                 detail::str_cat(c.backend, "/", c.mask, " T=", c.t, " H=", c.h, "/", c.h_kv, " D=", c.d, " ", c.dtype));
    measured.emplace_back(c, measure(c, o));
  }

  // The yardstick last, on each device used, so its buffers do not sit in the allocator earlier.
  std::map<std::string, SgemmYardstick> sgemm;  // by device kind
  KernelBenchResult result;
  std::vector<Row> sgemm_rows;
  for (const auto& [c, m] : measured) {
    const std::string dev = c.device().is_cpu() ? "cpu" : "cuda";
    if (sgemm.count(dev)) continue;
    const int64_t n = o.sgemm_n > 0 ? o.sgemm_n : dev == "cpu" ? 2048 : 8192;
    sgemm[dev] = measure_sgemm(c.device(), n, {1, 5, 5.0});
    sgemm_rows.push_back(sgemm_row(dev == "cpu" ? "sgemm" : "sgemm_cuda", sgemm[dev]));
  }
  for (const auto& [c, m] : measured) {
    const double yard = sgemm[c.device().is_cpu() ? "cpu" : "cuda"].best.gflops;
    if (c.fwd) result.rows.push_back(make_row(c, "fwd", m, yard));
    if (c.fwd_bwd) result.rows.push_back(make_row(c, "fwd+bwd", m, yard));
  }
  result.summary = compare_with_causal(result.rows);
  // The merge kernel against a device copy, at the largest CUDA configuration's size.
  const Config* big = nullptr;
  for (const auto& [c, m] : measured)
    if (c.backend == "cuda" && (!big || c.t * c.h * c.d > big->t * big->h * big->d)) big = &c;
  if (big) {
    const auto partial = parse_dtype(big->dtype).type == at::kDouble ? at::kFloat : parse_dtype(big->dtype).type;
    const MergeBandwidth mb = measure_merge_bandwidth(big->t, big->h, big->d, partial, {2, 10, 5.0});
    std::ostringstream os;
    os.precision(4);
    os << "# merge kernel, cuda, T=" << mb.tokens << " H=" << mb.heads << " D=" << mb.head_dim << " partial "
       << big->dtype << ": " << mb.merge_ms << " ms = " << mb.merge_gb_per_s << " GB/s; float32 device copy of the "
       << "accumulator: " << mb.copy_ms << " ms = " << mb.copy_gb_per_s << " GB/s (read + written); merge/copy "
       << "bandwidth = " << mb.merge_gb_per_s / mb.copy_gb_per_s;
    result.summary.push_back(os.str());
  }
  result.rows.insert(result.rows.end(), sgemm_rows.begin(), sgemm_rows.end());
  return result;
}

}  // namespace longhaul::bench

#include "tests/common/cp_checks.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <gtest/gtest.h>

#include "attention/reference.h"
#include "core/errors.h"

namespace longhaul::testing {
namespace {

// Documents of uneven lengths (some shorter than a zigzag chunk, some crossing rank boundaries).
std::vector<int64_t> documents_for(int64_t T) {
  std::vector<int64_t> cu{0};
  for (int64_t len = 37; cu.back() < T; len = (len * 13 + 71) % (T / 2 + 50) + 5)
    cu.push_back(std::min(T, cu.back() + len));
  return cu;
}

// Parameters that make every kind of block (empty, full, partial) appear at small T.
int64_t family_param(const std::string& name, int64_t T) {
  if (name == "sliding_window" || name == "sliding_window_causal" || name == "global_sliding_window") return T / 9 + 2;
  if (name == "prefix_lm_causal") return T / 3;
  if (name == "prefix_lm_document") return 20;
  if (name == "block_causal_document") return T / 9 + 5;
  return 0;
}

}  // namespace

Mask mask_for(const std::string& name, int64_t T) {
  if (name == "full") return Mask::full();
  if (name == "causal") return Mask::causal();
  if (name == "documents") return Mask::full().documents(documents_for(T));
  if (name == "causal_documents") return Mask::causal().documents(documents_for(T));
  if (name == "causal_window") return Mask::causal().window(T / 7 + 3, 0);
  return masks::make(name, T, masks::uses_documents(name) ? documents_for(T) : std::vector<int64_t>{},
                     family_param(name, T), T / 10 + 1);
}

const std::vector<std::string>& family_cases() {
  static const std::vector<std::string> names{
      "full_document",    "causal_document",       "share_question",        "causal_blockwise",
      "prefix_lm_causal", "prefix_lm_document",    "sliding_window",        "sliding_window_causal",
      "global_sliding_window", "block_causal_document"};
  return names;
}

namespace {

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.cpu().to(at::kDouble), y = b.cpu().to(at::kDouble);
  if (x.numel() == 0) return 0;
  at::Tensor fx = at::isfinite(x), fy = at::isfinite(y);
  if (!at::equal(fx, fy)) return 1e30;
  x = x.masked_fill(~fx, 0);
  y = y.masked_fill(~fy, 0);
  return (x - y).abs().max().item<double>() / std::max(1.0, y.abs().max().item<double>());
}

// Random tensors from a private generator: thread-ranks must not share torch's global one.
struct Rng {
  explicit Rng(uint64_t seed) : gen(at::detail::createCPUGenerator(seed)) {}
  at::Tensor randn(at::IntArrayRef sizes) { return at::randn(sizes, gen, at::kDouble); }
  at::Generator gen;
};

double tol(at::ScalarType t) { return t == at::kDouble ? 1e-9 : t == at::kFloat ? 2e-4 : 3e-2; }

}  // namespace

std::string describe(const CpCase& c) {
  return detail::str_cat(to_string(c.strategy),
                         c.strategy == Strategy::Hybrid ? detail::str_cat("(", c.ulysses_degree, "x", to_string(c.inner), ")")
                                                         : std::string(),
                         "/", to_string(c.layout), "/", c.mask, " T=", c.T, " H=", c.H, "/",
                         c.H_kv, " D=", c.D, " ", c.dtype);
}

std::vector<std::string> masks_for(Strategy s) {
  if (s == Strategy::RingSelfAttention) return {"full", "causal"};
  return {"full", "causal", "documents", "causal_documents", "causal_window"};
}

namespace {
// The global tensors of a case and their reference results: independent of strategy and layout,
// so one Problem serves every strategy × layout of a (mask, heads, dtype).
struct Problem {
  at::Tensor q, k, v, dout;
  AttentionOutput ref;
  AttentionGrads ref_g;
  Mask mask;
};

Problem make_problem(const CpCase& c) {
  Rng rng(1234 + c.T);  // the same global tensors on every rank
  Problem pr{rng.randn({c.T, c.H, c.D}).to(c.dtype), rng.randn({c.T, c.H_kv, c.D}).to(c.dtype),
             rng.randn({c.T, c.H_kv, c.D}).to(c.dtype), rng.randn({c.T, c.H, c.D}).to(c.dtype), {}, {},
             mask_for(c.mask, c.T)};
  pr.ref = attention_forward(pr.q, pr.k, pr.v, BlockView::self(c.T), pr.mask, 0, AttentionBackend::Reference);
  pr.ref_g = attention_backward(pr.dout, pr.q, pr.k, pr.v, pr.ref.out, pr.ref.lse, BlockView::self(c.T), pr.mask, 0,
                                AttentionBackend::Reference);
  return pr;
}

// The reference depends only on the tensors and the mask, not on the strategy, layout or rank:
// thread-ranks and successive strategies share it instead of each recomputing the float64 T×T
// products (every rank of a P = 8 run computed it 8 times). The first caller of a key computes
// it, the others wait for it; the last kKeep keys are kept (check_all_cases uses 12 in a row).
std::shared_ptr<const Problem> shared_problem(const CpCase& c) {
  constexpr size_t kKeep = 12;
  using Entry = std::pair<std::string, std::shared_future<std::shared_ptr<const Problem>>>;
  static std::mutex mutex;
  static std::deque<Entry> kept;
  const std::string key = detail::str_cat(c.mask, " T=", c.T, " H=", c.H, "/", c.H_kv, " D=", c.D, " ", c.dtype);
  std::promise<std::shared_ptr<const Problem>> made;
  std::shared_future<std::shared_ptr<const Problem>> found;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = std::find_if(kept.begin(), kept.end(), [&](const Entry& e) { return e.first == key; });
    if (it != kept.end()) {
      found = it->second;
    } else {
      kept.emplace_back(key, made.get_future().share());
      if (kept.size() > kKeep) kept.pop_front();
    }
  }
  if (found.valid()) return found.get();
  try {
    auto problem = std::make_shared<const Problem>(make_problem(c));
    made.set_value(problem);
    return problem;
  } catch (...) {
    made.set_exception(std::current_exception());
    throw;
  }
}

void check_problem(Communicator& comm, const CpCase& c, const Problem& pr) {
  const int p = comm.size(), r = comm.rank();
  const Mask& mask = pr.mask;
  const ShardPlan plan = ShardPlan::for_mask(c.T, mask, c.layout, p, r, 8);
  ContextParallel cp(comm.shared_from_this(),
                     {.strategy = c.strategy, .layout = c.layout, .ulysses_degree = c.ulysses_degree, .inner = c.inner});
  auto shard = [&](const at::Tensor& x) { return plan.shard(x).to(c.device); };
  auto f = cp.forward(shard(pr.q), shard(pr.k), shard(pr.v), plan, mask);
  const std::string what = describe(c) + " P=" + std::to_string(p) + " rank " + std::to_string(r);
  ASSERT_EQ(f.out.scalar_type(), c.dtype) << what;
  EXPECT_LE(rel_err(f.out, plan.shard(pr.ref.out)), tol(c.dtype)) << what << " out";
  EXPECT_LE(rel_err(f.lse, plan.shard(pr.ref.lse.transpose(0, 1)).transpose(0, 1)), tol(c.dtype)) << what << " lse";
  ASSERT_EQ(f.out.device(), c.device) << what;
  auto g = cp.backward(shard(pr.dout), shard(pr.q), shard(pr.k), shard(pr.v), f.out, f.lse, plan, mask);
  EXPECT_LE(rel_err(g.dq, plan.shard(pr.ref_g.dq)), tol(c.dtype) * 10) << what << " dq";
  EXPECT_LE(rel_err(g.dk, plan.shard(pr.ref_g.dk)), tol(c.dtype) * 10) << what << " dk";
  EXPECT_LE(rel_err(g.dv, plan.shard(pr.ref_g.dv)), tol(c.dtype) * 10) << what << " dv";
}
}  // namespace

void check_against_reference(Communicator& comm, const CpCase& c) { check_problem(comm, c, *shared_problem(c)); }

void check_all_cases(Communicator& comm, Strategy s, int64_t T) {
  // Ulysses splits heads: H = lcm(2, P), so H % P == 0; H_kv = H/2 exercises KV replication.
  const int64_t H = s == Strategy::Ulysses ? std::lcm<int64_t>(2, comm.size()) : 4;
  for (const auto& m : masks_for(s))
    for (int64_t hkv : {H, H / 2}) {
      const auto pr = shared_problem(CpCase{s, Layout::Zigzag, m, T, H, hkv, 32, at::kDouble});
      for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped})
        check_problem(comm, CpCase{s, l, m, T, H, hkv, 32, at::kDouble}, *pr);
    }
  // Low precision once per strategy: float32 and bfloat16 accumulate in float32.
  check_against_reference(comm, CpCase{s, Layout::Zigzag, "causal", T, H, H / 2, 32, at::kFloat});
  check_against_reference(comm, CpCase{s, Layout::Zigzag, "causal", T, H, H / 2, 32, at::kBFloat16});
}

void check_device_cases(Communicator& comm, Strategy s, int64_t T, c10::Device device) {
  const int64_t H = s == Strategy::Ulysses || s == Strategy::Hybrid ? std::lcm<int64_t>(2, comm.size()) : 4;
  const int u = s == Strategy::Hybrid ? 2 : 1;
  for (auto dtype : {at::kDouble, at::kFloat, at::kBFloat16})
    for (const auto& m : masks_for(s)) {
      CpCase c{s, Layout::Zigzag, m, T, H, H / 2, 64, dtype, u, Strategy::Ring, device};
      const auto pr = shared_problem(c);
      for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped}) {
        c.layout = l;
        check_problem(comm, c, *pr);
      }
    }
}

void check_family_cases(Communicator& comm, Strategy s, int64_t T) {
  const int64_t H = s == Strategy::Ulysses || s == Strategy::Hybrid ? std::lcm<int64_t>(2, comm.size()) : 4;
  const int u = s == Strategy::Hybrid ? (comm.size() % 2 == 0 ? 2 : 1) : 1;
  for (const auto& m : family_cases()) {
    const auto pr = shared_problem(CpCase{s, Layout::Zigzag, m, T, H, H / 2, 16, at::kDouble, u});
    for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped, Layout::Balanced})
      check_problem(comm, CpCase{s, l, m, T, H, H / 2, 16, at::kDouble, u}, *pr);
  }
}

void check_hybrid_cases(Communicator& comm, int u, int64_t T) {
  for (const auto& m : masks_for(Strategy::Hybrid)) {
    const auto pr = shared_problem(CpCase{Strategy::Hybrid, Layout::Zigzag, m, T, 4, 2, 32, at::kDouble});
    for (Strategy inner : {Strategy::Ring, Strategy::TokenRing})
      for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped})
        check_problem(comm, CpCase{Strategy::Hybrid, l, m, T, 4, 2, 32, at::kDouble, u, inner}, *pr);
  }
}

void check_autograd_model(Communicator& comm, Strategy s, Layout l) {
  const int p = comm.size(), r = comm.rank();
  const int64_t T = 200, E = 24, D = 8;
  const int64_t H = s == Strategy::Ulysses ? std::lcm<int64_t>(2, p) : 4, H_kv = H / 2;
  Rng rng(77);
  at::Tensor x = rng.randn({T, E}), target = rng.randn({T, H, D});
  at::Tensor wq0 = rng.randn({E, H * D}) * 0.3, wk0 = rng.randn({E, H_kv * D}) * 0.3, wv0 = rng.randn({E, H_kv * D}) * 0.3;
  const Mask mask = Mask::causal();

  // Single process: SDPA (float64, autograd) on the whole sequence.
  at::Tensor wq = wq0.clone().set_requires_grad(true), wk = wk0.clone().set_requires_grad(true),
             wv = wv0.clone().set_requires_grad(true);
  auto heads = [](const at::Tensor& y, int64_t h) { return y.view({-1, h, D}).permute({1, 0, 2}).unsqueeze(0); };
  at::Tensor o = at::scaled_dot_product_attention(heads(at::matmul(x, wq), H), heads(at::matmul(x, wk), H_kv),
                                                  heads(at::matmul(x, wv), H_kv), {}, 0.0, true, {}, true);
  (o.squeeze(0).permute({1, 0, 2}) * target).sum().backward();

  // The same through ContextParallel::attention on this rank's shard.
  ShardPlan plan(T, std::nullopt, l, p, r);
  ContextParallel cp(comm.shared_from_this(), {.strategy = s, .layout = l});
  at::Tensor cq = wq0.clone().set_requires_grad(true), ck = wk0.clone().set_requires_grad(true),
             cv = wv0.clone().set_requires_grad(true);
  at::Tensor xs = plan.shard(x);
  at::Tensor out = cp.attention(at::matmul(xs, cq).view({-1, H, D}), at::matmul(xs, ck).view({-1, H_kv, D}),
                                at::matmul(xs, cv).view({-1, H_kv, D}), plan, mask);
  (out * plan.shard(target)).sum().backward();
  for (auto* w : {&cq, &ck, &cv}) {
    at::Tensor g = w->grad().clone();
    comm.all_reduce(g)->wait();  // parameter gradients are summed over the CP group
    *w = g;
  }
  EXPECT_LE(rel_err(cq, wq.grad()), 1e-9) << to_string(s) << " dWq";
  EXPECT_LE(rel_err(ck, wk.grad()), 1e-9) << to_string(s) << " dWk";
  EXPECT_LE(rel_err(cv, wv.grad()), 1e-9) << to_string(s) << " dWv";
}

void check_bitwise_reproducible(Communicator& comm, Strategy s) {
  const int64_t T = 500;
  Rng rng(5);
  const int64_t H = s == Strategy::Ulysses ? std::lcm<int64_t>(2, comm.size()) : 4;
  at::Tensor q = rng.randn({T, H, 32}).to(at::kFloat), k = rng.randn({T, H / 2, 32}).to(at::kFloat),
             v = rng.randn({T, H / 2, 32}).to(at::kFloat), dout = rng.randn({T, H, 32}).to(at::kFloat);
  const Mask mask = s == Strategy::RingSelfAttention ? Mask::causal() : mask_for("causal_documents", T);
  std::optional<at::Tensor> cu;
  if (mask.has_documents()) cu = at::tensor(mask.cu_seqlens(), at::kLong);
  ShardPlan plan(T, cu, Layout::Zigzag, comm.size(), comm.rank(), 8);
  ContextParallel cp(comm.shared_from_this(), {.strategy = s, .layout = Layout::Zigzag});
  std::vector<at::Tensor> results[2];
  for (auto& res : results) {
    auto f = cp.forward(plan.shard(q), plan.shard(k), plan.shard(v), plan, mask);
    auto g = cp.backward(plan.shard(dout), plan.shard(q), plan.shard(k), plan.shard(v), f.out, f.lse, plan, mask);
    res = {f.out, f.lse, g.dq, g.dk, g.dv};
  }
  for (size_t i = 0; i < results[0].size(); ++i) EXPECT_TRUE(at::equal(results[0][i], results[1][i])) << "tensor " << i;
}

void check_disagreement_is_an_error(Communicator& comm) {
  if (comm.size() < 2) return;
  const int64_t T = 64, H = comm.rank() == 1 ? 2 : 4;  // rank 1 passes other head counts
  ShardPlan plan(T, std::nullopt, Layout::Contiguous, comm.size(), comm.rank());
  ContextParallel cp(comm.shared_from_this(), {.strategy = Strategy::Ring, .layout = Layout::Contiguous});
  at::Tensor q = at::zeros({plan.local_rows(), H, 8}), k = at::zeros({plan.local_rows(), 2, 8});
  try {
    cp.forward(q, k, k, plan, Mask::causal());
    ADD_FAILURE() << "ranks with different H were not detected";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 disagrees with rank 0 on H (2 vs 4)"), std::string::npos) << e.what();
  }
}

void check_later_disagreement_is_an_error(Communicator& comm) {
  if (comm.size() < 2) return;
  ContextParallel cp(comm.shared_from_this(), {.strategy = Strategy::Ring, .layout = Layout::Zigzag});
  for (int call = 0; call < 4; ++call) {
    const int64_t T = call == 3 && comm.rank() == 1 ? 80 : 64;  // rank 1 changes T at the fourth call
    ShardPlan plan(T, std::nullopt, Layout::Zigzag, comm.size(), comm.rank());
    at::Tensor q = at::ones({plan.local_rows(), 2, 8}), k = at::ones({plan.local_rows(), 1, 8});
    const auto start = Clock::now();
    try {
      auto f = cp.forward(q, k, k, plan, Mask::causal());
      EXPECT_LT(call, 3) << "ranks with different T were not detected at call " << call;
      EXPECT_TRUE(at::allclose(f.out, at::ones_like(f.out))) << "call " << call;
    } catch (const InvalidArgument& e) {
      EXPECT_EQ(call, 3) << e.what();
      EXPECT_NE(std::string(e.what()).find("rank 1 disagrees with rank 0 on T (80 vs 64)"), std::string::npos)
          << e.what();
      EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
    }
  }
}

void check_one_invalid_rank_fails_every_rank_at_once(Communicator& comm) {
  if (comm.size() < 2) return;
  const bool odd_one = comm.rank() == 1;
  ContextParallel cp(comm.shared_from_this(), {.strategy = Strategy::Ring, .layout = Layout::Zigzag});
  const int64_t T = 200;
  const at::Tensor docs = at::tensor({0, 100, 200}, at::kLong);
  struct Case {
    const char* what;
    std::function<void()> call;
    std::string own_error;  // rank 1's
  };
  const ShardPlan plan(T, docs, Layout::Zigzag, comm.size(), comm.rank());
  const int64_t n = plan.local_rows();
  const std::vector<Case> cases{
      {"q rows",
       [&] {
         at::Tensor q = at::ones({odd_one ? n + 1 : n, 2, 8}, at::kDouble), k = at::ones({n, 1, 8}, at::kDouble);
         cp.forward(q, k, k, plan, plan.document_mask());
       },
       "q must be ["},
      {"k dtype",
       [&] {
         at::Tensor q = at::ones({n, 2, 8}, at::kDouble), k = at::ones({n, 1, 8}, odd_one ? at::kFloat : at::kDouble);
         cp.forward(q, k, k, plan, plan.document_mask());
       },
       "q, k and v must have one dtype"},
      {"rows of another min_chunk",
       [&] {
         // Same T, layout and documents; the rows differ, and so does the plan's fingerprint.
         const ShardPlan other(T, docs, Layout::Zigzag, comm.size(), comm.rank(), odd_one ? 1 : 64);
         at::Tensor q = at::ones({other.local_rows(), 2, 8}, at::kDouble);
         at::Tensor k = at::ones({other.local_rows(), 1, 8}, at::kDouble);
         cp.forward(q, k, k, other, other.document_mask());
       },
       "rank 1 disagrees with rank 0 on documents"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const auto start = Clock::now();
    try {
      c.call();
      ADD_FAILURE() << "accepted";
    } catch (const InvalidArgument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(odd_one ? c.own_error : "rank 1 disagrees with rank 0 on "), std::string::npos) << what;
    }
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
  }
}

namespace {
// One non-finite value planted in q, k or v of an otherwise random problem.
struct Planted {
  const char* what;
  char tensor;  // 'q', 'k' or 'v'
  int64_t pos, head;
  double value;
  bool visible_rows_nan;  // every query that sees the position (same kv group) must come out NaN
};

// SDPA's math backend on the whole sequence (the semantics of torch's attention), float64 with
// autograd: out [T, H, D] and the gradients of (out · dout).sum().
struct SdpaResult {
  at::Tensor out, dq, dk, dv;
};
SdpaResult sdpa_math(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& dout,
                     const Mask& mask) {
  const int64_t T = q.size(0), H = q.size(1), H_kv = k.size(1);
  at::Tensor Q = q.clone().set_requires_grad(true), K = k.clone().set_requires_grad(true),
             V = v.clone().set_requires_grad(true);
  auto heads = [&](const at::Tensor& x) {  // [T, h, D] -> [1, H, T, D], kv heads repeated
    at::Tensor y = x.permute({1, 0, 2});
    return (y.size(0) == H ? y : y.repeat_interleave(H / H_kv, 0)).unsqueeze(0);
  };
  // The additive form SDPA's front end makes of a boolean mask (the math backend adds what it gets).
  const at::Tensor bias = at::zeros({T, T}, at::kDouble)
                              .masked_fill(~reference::visible_matrix(mask, BlockView::self(T)),
                                           -std::numeric_limits<double>::infinity());
  at::Tensor o = std::get<0>(at::_scaled_dot_product_attention_math(heads(Q), heads(K), heads(V), bias));
  o = o.squeeze(0).permute({1, 0, 2});
  (o * dout).sum().backward();
  return {o.detach(), Q.grad(), K.grad(), V.grad()};
}

// Ours may leave finite what SDPA's math backend turns non-finite (it contaminates whole heads
// through masked positions), never the reverse; where both are finite they agree.
void expect_within_sdpa(const at::Tensor& ours, const at::Tensor& sdpa, double tolerance, const std::string& what) {
  at::Tensor a = ours.cpu().to(at::kDouble), b = sdpa.to(at::kDouble);
  at::Tensor extra = ~at::isfinite(a) & at::isfinite(b);
  EXPECT_EQ(extra.sum().item<int64_t>(), 0) << what << ": non-finite where SDPA is finite";
  at::Tensor both = at::isfinite(a) & at::isfinite(b);
  const double err = both.any().item<bool>() ? (a - b).masked_select(both).abs().max().item<double>() : 0.0;
  EXPECT_LE(err, tolerance) << what << ": differs from SDPA where both are finite";
}
}  // namespace

void check_nonfinite_inputs(Communicator& comm, Strategy s, int u, at::ScalarType dtype) {
  const int p = comm.size(), r = comm.rank();
  const int64_t T = 211, D = 16;
  const int64_t H = s == Strategy::Ulysses || s == Strategy::Hybrid ? std::lcm<int64_t>(2, p) : 4, H_kv = H / 2;
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::vector<Planted> planted{{"NaN in q", 'q', 150, 1, nan, false},
                                     {"NaN in k", 'k', 40, 0, nan, true},
                                     {"NaN in v", 'v', 100, H_kv - 1, nan, true},
                                     {"+inf in k", 'k', 7, 0, inf, false},
                                     {"-inf in v", 'v', 180, 0, -inf, false}};
  for (const std::string m : {"causal", "full"}) {
    const Mask mask = mask_for(m, T);
    const at::Tensor vis = reference::visible_matrix(mask, BlockView::self(T));
    for (const Planted& x : planted) {
      Rng rng(99);
      at::Tensor q = rng.randn({T, H, D}), k = rng.randn({T, H_kv, D}), v = rng.randn({T, H_kv, D}),
                 dout = rng.randn({T, H, D});
      at::Tensor& t = x.tensor == 'q' ? q : x.tensor == 'k' ? k : v;
      t.index_put_({x.pos, x.head, 3}, x.value);
      const SdpaResult ref = sdpa_math(q, k, v, dout, mask);

      const ShardPlan plan(T, std::nullopt, Layout::Zigzag, p, r);
      ContextParallel cp(comm.shared_from_this(), {.strategy = s, .layout = Layout::Zigzag, .ulysses_degree = u});
      auto shard = [&](const at::Tensor& x) { return plan.shard(x).to(dtype); };
      auto f = cp.forward(shard(q), shard(k), shard(v), plan, mask);  // no hang, on every rank
      auto g = cp.backward(shard(dout), shard(q), shard(k), shard(v), f.out, f.lse, plan, mask);
      const std::string what = detail::str_cat(to_string(s), " ", m, " ", x.what, " P=", p, " rank ", r, " ", dtype);
      expect_within_sdpa(f.out, plan.shard(ref.out), tol(dtype), what + " out");
      expect_within_sdpa(g.dq, plan.shard(ref.dq), tol(dtype) * 10, what + " dq");
      expect_within_sdpa(g.dk, plan.shard(ref.dk), tol(dtype) * 10, what + " dk");
      expect_within_sdpa(g.dv, plan.shard(ref.dv), tol(dtype) * 10, what + " dv");

      // Not swallowed: the value reaches every output it feeds.
      at::Tensor must_nan = at::zeros({T, H}, at::kBool);
      if (x.tensor == 'q') must_nan.index_put_({x.pos, x.head}, true);
      if (x.visible_rows_nan)
        for (int64_t h = x.head * (H / H_kv); h < (x.head + 1) * (H / H_kv); ++h)
          must_nan.select(1, h).copy_(vis.select(1, x.pos));
      at::Tensor ours_nan = at::isnan(f.out).any(-1);
      EXPECT_TRUE(at::equal(ours_nan.logical_and(plan.shard(must_nan)), plan.shard(must_nan)))
          << what << ": an output that depends on the NaN is not NaN";
    }
  }
}

}  // namespace longhaul::testing

#include "tests/common/cp_checks.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

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

void check_against_reference(Communicator& comm, const CpCase& c) { check_problem(comm, c, make_problem(c)); }

void check_all_cases(Communicator& comm, Strategy s, int64_t T) {
  // Ulysses splits heads: H = lcm(2, P), so H % P == 0; H_kv = H/2 exercises KV replication.
  const int64_t H = s == Strategy::Ulysses ? std::lcm<int64_t>(2, comm.size()) : 4;
  for (const auto& m : masks_for(s))
    for (int64_t hkv : {H, H / 2}) {
      const Problem pr = make_problem(CpCase{s, Layout::Zigzag, m, T, H, hkv, 32, at::kDouble});
      for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped})
        check_problem(comm, CpCase{s, l, m, T, H, hkv, 32, at::kDouble}, pr);
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
      const Problem pr = make_problem(c);
      for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped}) {
        c.layout = l;
        check_problem(comm, c, pr);
      }
    }
}

void check_family_cases(Communicator& comm, Strategy s, int64_t T) {
  const int64_t H = s == Strategy::Ulysses || s == Strategy::Hybrid ? std::lcm<int64_t>(2, comm.size()) : 4;
  const int u = s == Strategy::Hybrid ? (comm.size() % 2 == 0 ? 2 : 1) : 1;
  for (const auto& m : family_cases()) {
    const Problem pr = make_problem(CpCase{s, Layout::Zigzag, m, T, H, H / 2, 16, at::kDouble, u});
    for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped, Layout::Balanced})
      check_problem(comm, CpCase{s, l, m, T, H, H / 2, 16, at::kDouble, u}, pr);
  }
}

void check_hybrid_cases(Communicator& comm, int u, int64_t T) {
  for (const auto& m : masks_for(Strategy::Hybrid)) {
    const Problem pr = make_problem(CpCase{Strategy::Hybrid, Layout::Zigzag, m, T, 4, 2, 32, at::kDouble});
    for (Strategy inner : {Strategy::Ring, Strategy::TokenRing})
      for (Layout l : {Layout::Contiguous, Layout::Zigzag, Layout::Striped})
        check_problem(comm, CpCase{Strategy::Hybrid, l, m, T, 4, 2, 32, at::kDouble, u, inner}, pr);
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

}  // namespace longhaul::testing

// The preflight's update that changes nothing (train/update_rehearsal.h): bit for bit, the
// parameters, moments, step counts and learning rates stay as they were, for a resumed state
// (copied back) and a state made at step 0 (zeroed), in float32 and float64, with weight decay.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "train/update_rehearsal.h"

namespace longhaul::train {
namespace {

using State = torch::optim::AdamWParamState;

// Equal bit for bit (so -0.0 differs from +0.0, and a NaN would differ from itself only if its bits do).
bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto as_ints = [](const at::Tensor& t) {
    return t.contiguous().view(t.element_size() == 8 ? at::kLong : at::kInt);
  };
  return at::equal(as_ints(a), as_ints(b));
}

struct Snapshot {
  std::vector<at::Tensor> params, exp_avg, exp_avg_sq;
  std::vector<int64_t> steps;
};

Snapshot snapshot(torch::optim::AdamW& optim, const std::vector<at::Tensor>& params) {
  Snapshot s;
  for (const at::Tensor& p : params) {
    s.params.push_back(p.detach().clone());
    const auto it = optim.state().find(p.unsafeGetTensorImpl());
    if (it == optim.state().end()) {
      s.exp_avg.emplace_back(), s.exp_avg_sq.emplace_back(), s.steps.push_back(-1);
      continue;
    }
    const auto& st = static_cast<const State&>(*it->second);
    s.exp_avg.push_back(st.exp_avg().clone());
    s.exp_avg_sq.push_back(st.exp_avg_sq().clone());
    s.steps.push_back(st.step());
  }
  return s;
}

void expect_same(const Snapshot& a, const Snapshot& b) {
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) {
    EXPECT_TRUE(same_bits(a.params[i], b.params[i])) << "parameter " << i;
    EXPECT_EQ(a.steps[i], b.steps[i]) << "step count of parameter " << i;
    EXPECT_EQ(a.exp_avg[i].defined(), b.exp_avg[i].defined()) << i;
    if (!a.exp_avg[i].defined() || !b.exp_avg[i].defined()) continue;
    EXPECT_TRUE(same_bits(a.exp_avg[i], b.exp_avg[i])) << "exp_avg of parameter " << i;
    EXPECT_TRUE(same_bits(a.exp_avg_sq[i], b.exp_avg_sq[i])) << "exp_avg_sq of parameter " << i;
  }
}

// Parameters of both signs, signed zeros among them, a small, a large, a transposed and a 0-dim
// one, and one without a gradient last (AdamW skips it: no state).
std::vector<at::Tensor> make_params(at::ScalarType dtype) {
  const auto opts = at::TensorOptions().dtype(dtype);
  at::Tensor a = at::randn({7, 5}, opts), b = at::randn({1000}, opts), idle = at::randn({3}, opts);
  at::Tensor transposed = at::randn({4, 6}, opts).t(), scalar = at::zeros({}, opts).neg();  // -0.0
  a.view(-1).index_put_({0}, -0.0);
  a.view(-1).index_put_({1}, 0.0);
  transposed.index_put_({1, 2}, -0.0);
  for (at::Tensor* t : {&a, &b, &transposed, &scalar, &idle}) t->set_requires_grad(true);
  return {a, b, transposed, scalar, idle};
}

void give_gradients(const std::vector<at::Tensor>& params, uint64_t seed) {
  at::manual_seed(seed);
  for (size_t i = 0; i + 1 < params.size(); ++i) params[i].mutable_grad() = at::randn_like(params[i]) * 3.0;
}

TEST(UpdateRehearsal, LeavesAResumedStateAsItWas) {
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    at::manual_seed(11);
    std::vector<at::Tensor> params = make_params(dtype);
    torch::optim::AdamWOptions ao(3e-3);
    ao.betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
    torch::optim::AdamW optim(params, ao);
    for (uint64_t s = 0; s < 3; ++s) {  // a run three steps in: moments and step counts that are not zero
      give_gradients(params, 100 + s);
      optim.step();
    }
    give_gradients(params, 200);
    const Snapshot before = snapshot(optim, params);
    ASSERT_EQ(before.steps[0], 3);
    EXPECT_EQ(rehearse_update(optim, {}), 4) << "the four parameters with a gradient";
    expect_same(snapshot(optim, params), before);
    EXPECT_EQ(static_cast<torch::optim::AdamWOptions&>(optim.param_groups()[0].options()).lr(), 3e-3);
    // The same update at the real rate moves them: the check above is not vacuous.
    optim.step();
    EXPECT_FALSE(same_bits(params[1], before.params[1]));
    EXPECT_EQ(static_cast<const State&>(*optim.state().at(params[1].unsafeGetTensorImpl())).step(), 4);
  }
}

TEST(UpdateRehearsal, ZeroesAStateMadeAtStepZero) {
  at::manual_seed(12);
  std::vector<at::Tensor> params = make_params(at::kFloat);
  torch::optim::AdamW optim(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.01));
  std::unordered_set<const void*> fresh;
  for (size_t i = 0; i + 1 < params.size(); ++i) {  // as the preflight makes it
    auto st = std::make_unique<State>();
    st->step(0);
    st->exp_avg(at::zeros_like(params[i]));
    st->exp_avg_sq(at::zeros_like(params[i]));
    optim.state()[params[i].unsafeGetTensorImpl()] = std::move(st);
    fresh.insert(params[i].unsafeGetTensorImpl());
  }
  give_gradients(params, 300);
  const Snapshot before = snapshot(optim, params);
  for (int repeat = 0; repeat < 2; ++repeat) {
    EXPECT_EQ(rehearse_update(optim, fresh), 4);
    expect_same(snapshot(optim, params), before);
  }
  // The first real update then starts from step 0, as without the rehearsal.
  optim.step();
  EXPECT_EQ(static_cast<const State&>(*optim.state().at(params[0].unsafeGetTensorImpl())).step(), 1);
}

// A step that throws half way (here a gradient of the wrong shape on the second parameter; under
// the preflight's ceiling, an allocation) still leaves rates, step counts and moments as they were.
TEST(UpdateRehearsal, PutsBackWhatAFailedStepMoved) {
  at::manual_seed(13);
  std::vector<at::Tensor> params = make_params(at::kFloat);
  torch::optim::AdamW optim(params, torch::optim::AdamWOptions(2e-3).weight_decay(0.1));
  for (uint64_t s = 0; s < 2; ++s) {
    give_gradients(params, 400 + s);
    optim.step();
  }
  give_gradients(params, 500);
  const Snapshot before = snapshot(optim, params);
  params[1].mutable_grad() = at::ones({3}, params[1].options());  // the first parameter's update goes through
  EXPECT_ANY_THROW(rehearse_update(optim, {}));
  expect_same(snapshot(optim, params), before);
  EXPECT_EQ(static_cast<torch::optim::AdamWOptions&>(optim.param_groups()[0].options()).lr(), 2e-3);
}

}  // namespace
}  // namespace longhaul::train

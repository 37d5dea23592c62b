#include "train/update_rehearsal.h"

#include <ATen/ATen.h>
#include <c10/util/ScopeExit.h>

#include <vector>

namespace longhaul::train {
namespace {

using State = torch::optim::AdamWParamState;

// What the update moves in one parameter's state, as it was before.
struct Saved {
  at::Tensor param;
  at::Tensor negative_zeros;  // indices of the parameter's -0.0 entries, [n, dims]
  State* state;
  int64_t step;
  bool fresh;
  at::Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;  // copies, where not fresh
};

at::Tensor copy_of(const at::Tensor& t) { return t.defined() ? t.clone() : at::Tensor(); }

void put_back(at::Tensor& t, const at::Tensor& saved, bool fresh) {
  if (!t.defined()) return;
  if (fresh) {
    t.zero_();
  } else if (saved.defined()) {
    t.copy_(saved);
  }
}

}  // namespace

int rehearse_update(torch::optim::AdamW& optim, const std::unordered_set<const void*>& fresh) {
  std::vector<Saved> saved;
  int updated = 0;
  for (const auto& group : optim.param_groups())
    for (const at::Tensor& p : group.params()) {
      if (!p.grad().defined()) continue;
      ++updated;
      const auto it = optim.state().find(p.unsafeGetTensorImpl());
      if (it == optim.state().end()) continue;  // the step makes it; the caller made every one
      auto& st = static_cast<State&>(*it->second);
      const bool is_fresh = fresh.count(p.unsafeGetTensorImpl()) > 0;
      // The step adds ±0 to every entry: only a -0.0 can change (to +0.0), so those are noted.
      const at::Tensor value = at::atleast_1d(p.detach());
      saved.push_back({value, at::nonzero(value.eq(0).logical_and_(at::signbit(value))), &st, st.step(),
                       is_fresh, is_fresh ? at::Tensor() : copy_of(st.exp_avg()),
                       is_fresh ? at::Tensor() : copy_of(st.exp_avg_sq()),
                       is_fresh ? at::Tensor() : copy_of(st.max_exp_avg_sq())});
    }
  std::vector<double> rates;
  for (auto& group : optim.param_groups()) {
    auto& options = static_cast<torch::optim::AdamWOptions&>(group.options());
    rates.push_back(options.lr());
    options.lr(0.0);
  }
  // Put back also when the step throws (out of memory under the preflight's ceiling, which the
  // trainer survives): rates, step counts, moments and -0.0 entries.
  const auto restore = c10::make_scope_exit([&] {
    for (size_t i = 0; i < rates.size(); ++i)
      static_cast<torch::optim::AdamWOptions&>(optim.param_groups()[i].options()).lr(rates[i]);
    const at::NoGradGuard no_grad;
    for (Saved& s : saved) {
      if (s.negative_zeros.size(0) > 0) {
        c10::List<std::optional<at::Tensor>> at_index;
        for (int64_t d = 0; d < s.negative_zeros.size(1); ++d) at_index.push_back(s.negative_zeros.select(1, d));
        s.param.index_put_(at_index, at::full({}, -0.0, s.param.options()));
      }
      s.state->step(s.step);
      put_back(s.state->exp_avg(), s.exp_avg, s.fresh);
      put_back(s.state->exp_avg_sq(), s.exp_avg_sq, s.fresh);
      put_back(s.state->max_exp_avg_sq(), s.max_exp_avg_sq, s.fresh);
    }
  });
  optim.step();
  return updated;
}

}  // namespace longhaul::train

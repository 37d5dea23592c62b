#include "train/attention_clock.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/stream_event.h"
#include "runtime/comm/work.h"

namespace longhaul::train {
namespace {

using Clock = std::chrono::steady_clock;

struct ClockRef : torch::CustomClassHolder {
  explicit ClockRef(AttentionClock* c) : clock(c) {}
  AttentionClock* clock;
};

// Identity on the attention's output: its backward marks where the attention backward starts.
class MarkEnd : public torch::autograd::Function<MarkEnd> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& out,
                                                AttentionClock* clock) {
    ctx->saved_data["c"] = c10::IValue::make_capsule(c10::make_intrusive<ClockRef>(clock));
    return {out.view_as(out)};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list g) {
    auto* c = c10::static_intrusive_pointer_cast<ClockRef>(ctx->saved_data["c"].toCapsule())->clock;
    if (!g[0].device().is_cpu()) c->backward_open = record_event_on(g[0].device());
    c->backward_begin = Clock::now();
    c->backward_wait_begin = comm_wait_seconds();
    return {g[0], at::Tensor()};
  }
};

// Identity on q, k, v: its backward marks where the attention backward ended.
class MarkBegin : public torch::autograd::Function<MarkBegin> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v, AttentionClock* clock) {
    ctx->saved_data["c"] = c10::IValue::make_capsule(c10::make_intrusive<ClockRef>(clock));
    return {q.view_as(q), k.view_as(k), v.view_as(v)};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list g) {
    auto* c = c10::static_intrusive_pointer_cast<ClockRef>(ctx->saved_data["c"].toCapsule())->clock;
    if (c->backward_open) {
      c->backward_spans.emplace_back(std::move(*c->backward_open), record_event_on(g[0].device()));
      c->backward_open.reset();
      return {g[0], g[1], g[2], at::Tensor()};
    }
    c->backward_s += std::chrono::duration<double>(Clock::now() - c->backward_begin).count();
    c->wait_s += comm_wait_seconds() - c->backward_wait_begin;
    return {g[0], g[1], g[2], at::Tensor()};
  }
};

}  // namespace

void AttentionClock::reset() {
  forward_s = backward_s = wait_s = 0;
  device_timed = false;
  forward_spans.clear();
  backward_spans.clear();
  backward_open.reset();
}

void AttentionClock::settle() {
  auto add = [](std::vector<std::pair<c10::Event, c10::Event>>& spans, double& into) {
    for (auto& [begin, end] : spans) {
      end.synchronize();
      into += begin.elapsedTime(end) / 1e3;  // ms
    }
    spans.clear();
  };
  device_timed = device_timed || !forward_spans.empty() || !backward_spans.empty();
  add(forward_spans, forward_s);
  add(backward_spans, backward_s);
}

at::Tensor timed_attention(AttentionClock& clock, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>& call) {
  auto in = MarkBegin::apply(q, k, v, &clock);
  if (!q.device().is_cpu()) {
    c10::Event begin = record_event_on(q.device());
    at::Tensor out = call(in[0], in[1], in[2]);
    clock.forward_spans.emplace_back(std::move(begin), record_event_on(q.device()));
    return MarkEnd::apply(out, &clock)[0];
  }
  const auto t0 = Clock::now();
  const double w0 = comm_wait_seconds();
  at::Tensor out = call(in[0], in[1], in[2]);
  clock.forward_s += std::chrono::duration<double>(Clock::now() - t0).count();
  clock.wait_s += comm_wait_seconds() - w0;
  return MarkEnd::apply(out, &clock)[0];
}

}  // namespace longhaul::train

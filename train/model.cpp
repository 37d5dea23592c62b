#include "train/model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "train/linear_cross_entropy.h"
#include "train/recompute.h"
#include "train/rope.h"

namespace longhaul::train {
namespace {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps = 1e-6) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

// x·wᵀ in w's dtype (x cast to it: a no-op unless w is a bf16 copy of a float32 master).
at::Tensor linear_in(const at::Tensor& x, const at::Tensor& w) { return at::linear(x.to(w.scalar_type()), w); }

// The block's matrices in dtype t (bf16: casts of the masters, through which the gradients flow
// back into them; otherwise the same tensors); the norm weights stay as they are.
BlockWeights matrices_in(const BlockWeights& l, at::ScalarType t) {
  BlockWeights c = l;
  for (at::Tensor* m : {&c.wq, &c.wk, &c.wv, &c.wo, &c.w1, &c.w3, &c.w2}) *m = m->to(t);
  return c;
}

}  // namespace

Transformer::Transformer(ModelOptions options, c10::Device device) : opt_(std::move(options)), device_(device) {
  opt_.validate();
  const int64_t d = opt_.dim, D = opt_.head_dim(), H = opt_.heads, Hkv = opt_.kv_heads, f = opt_.hidden();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(opt_.seed);
  const double out_std = opt_.init_std / std::sqrt(2.0 * double(opt_.layers));  // residual projections
  const auto where = at::TensorOptions().dtype(master_dtype(opt_.precision)).device(device_);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, double std) {
    at::Tensor t = at::empty(shape, at::kFloat);
    if (std > 0) {
      t.normal_(0, std, gen);
    } else {
      t.fill_(1.0);  // norm weights
    }
    t = t.to(where);  // the same tensor for float32 on the CPU
    std::string flat = name;  // torch::nn forbids dots in a parameter's own name
    for (char& c : flat)
      if (c == '.') c = '_';
    t = register_parameter(flat, t);
    ordered_.emplace_back(name, t);
    return t;
  };
  embed_ = add("embed", {opt_.vocab, d}, opt_.init_std);
  for (int64_t i = 0; i < opt_.layers; ++i) {
    const std::string p = "layer" + std::to_string(i) + ".";
    Layer l;
    l.norm1 = add(p + "norm1", {d}, 0);
    l.wq = add(p + "wq", {H * D, d}, opt_.init_std);
    l.wk = add(p + "wk", {Hkv * D, d}, opt_.init_std);
    l.wv = add(p + "wv", {Hkv * D, d}, opt_.init_std);
    l.wo = add(p + "wo", {d, H * D}, out_std);
    l.norm2 = add(p + "norm2", {d}, 0);
    l.w1 = add(p + "w1", {f, d}, opt_.init_std);
    l.w3 = add(p + "w3", {f, d}, opt_.init_std);
    l.w2 = add(p + "w2", {d, f}, out_std);
    layers_.push_back(l);
  }
  norm_f_ = add("norm_f", {d}, 0);
  head_ = add("head", {opt_.vocab, d}, opt_.init_std);
}

at::Tensor transformer_block(const BlockWeights& l, const ModelOptions& o, const at::Tensor& x, const RopeTables& rope,
                             const AttendFn& attend) {
  const int64_t Tl = x.size(0), H = o.heads, Hkv = o.kv_heads, D = o.head_dim();
  const at::ScalarType c = l.wq.scalar_type();
  at::Tensor h = rms_norm(x, l.norm1);
  at::Tensor q = apply_rope(linear_in(h, l.wq).view({Tl, H, D}), rope).to(c).contiguous();
  at::Tensor k = apply_rope(linear_in(h, l.wk).view({Tl, Hkv, D}), rope).to(c).contiguous();
  at::Tensor v = linear_in(h, l.wv).view({Tl, Hkv, D}).contiguous();
  at::Tensor a = attend(q, k, v);
  at::Tensor y = x + linear_in(a.reshape({Tl, H * D}), l.wo);
  at::Tensor h2 = rms_norm(y, l.norm2);
  return y + linear_in(at::silu(linear_in(h2, l.w1)) * linear_in(h2, l.w3), l.w2);
}

at::Tensor Transformer::block(const Layer& l, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                              ContextParallel& cp, const ShardPlan& plan, const Mask& mask,
                              AttentionClock* clock) const {
  auto call = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    return cp.attention(q, k, v, plan, mask);
  };
  return transformer_block(matrices_in(l, compute_dtype(opt_.precision)), opt_, x, RopeTables{cos, sin}, [&](const at::Tensor& q, const at::Tensor& k,
                                                                  const at::Tensor& v) {
    return clock ? timed_attention(*clock, q, k, v, call) : call(q, k, v);
  });
}

at::Tensor Transformer::forward(const at::Tensor& tokens, ContextParallel& cp, const ShardPlan& plan,
                                const Mask& mask, AttentionClock* clock) {
  return logits(hidden(tokens, cp, plan, mask, clock));
}

at::Tensor Transformer::logits(const at::Tensor& hidden) const {
  // The head's matmul in the compute dtype, the logits (and so the loss's softmax) in the master's.
  return linear_in(hidden, head_.to(compute_dtype(opt_.precision))).to(embed_.scalar_type());
}

at::Tensor Transformer::loss_sum(const at::Tensor& hidden, const at::Tensor& targets, int64_t chunk_rows) const {
  if (chunk_rows == 0) return at::cross_entropy_loss(logits(hidden), targets, {}, at::Reduction::Sum, -100);
  const at::ScalarType c = compute_dtype(opt_.precision);
  return linear_cross_entropy_sum(hidden.to(c), head_.to(c), targets, embed_.scalar_type(), chunk_rows);
}

at::Tensor Transformer::hidden(const at::Tensor& tokens, ContextParallel& cp, const ShardPlan& plan,
                               const Mask& mask, AttentionClock* clock) {
  const RopeTables rope = rope_tables(plan.doc_positions(), opt_.head_dim(), opt_.rope_theta, embed_.options());
  at::Tensor x = at::embedding(embed_, tokens.to(device_));
  for (const Layer& l : layers_) {
    if (opt_.checkpoint_blocks && at::GradMode::is_enabled()) {
      // Captures by value: the backward recomputation runs after this frame has returned.
      Layer lc = l;
      at::Tensor cos = rope.cos, sin = rope.sin;
      ShardPlan pc = plan;
      Mask mc = mask;
      ContextParallel* cpp = &cp;
      x = checkpointed([this, lc, cos, sin, cpp, pc, mc, clock](const at::Tensor& in) {
        return block(lc, in, cos, sin, *cpp, pc, mc, clock);
      }, x);
    } else {
      x = block(l, x, rope.cos, rope.sin, cp, plan, mask, clock);
    }
  }
  return rms_norm(x, norm_f_);
}

std::vector<std::pair<std::string, at::Tensor>> Transformer::ordered_parameters() const { return ordered_; }

int64_t Transformer::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : ordered_) n += t.numel();
  return n;
}

}  // namespace longhaul::train

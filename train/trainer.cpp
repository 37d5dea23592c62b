#include "train/trainer.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <charconv>
#include <chrono>
#include <optional>

#include "data/batch.h"
#include "data/concat_chunk.h"
#include "data/decomposition.h"
#include "data/sampler.h"
#include "core/aten_boundary.h"
#include "core/errors.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/grad_sync.h"
#include "train/linear_cross_entropy.h"
#include "train/schedule.h"
#include "train/task.h"

namespace longhaul::train {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

at::Tensor to_long(const std::vector<int32_t>& v) {
  return at::from_blob(const_cast<int32_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kInt).to(at::kLong);
}

constexpr const char* kFormat = "longhaul-train-checkpoint 1";

// The rotary base as a checkpoint keeps it: the shortest text that reads back as the same double.
std::string rope_theta_string(double theta) {
  char buf[32];
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, theta).ptr);
}

}  // namespace

Trainer::Trainer(CommPtr world, std::shared_ptr<data::TokenSource> source, TrainOptions options) try
    : opt_(std::move(options)),
      device_(training_device(opt_.device)),
      world_(world),
      source_(std::move(source)),
      rng_(at::make_generator<at::CPUGeneratorImpl>(opt_.seed)) {
  LH_CHECK(source_ != nullptr, "train: no token source");
  LH_CHECK(source_->vocab_size() <= opt_.model.vocab, "train: the data's vocabulary (", source_->vocab_size(),
           ") does not fit the model's (", opt_.model.vocab, "); pass --vocab ", source_->vocab_size());
  check_micro_batches(opt_.micro_batches, opt_.tokens_per_step);
  require_device_transport(*world_, device_);
  degrees_ = std::make_unique<DegreeSchedule>(world_, opt_);
  model_ = std::make_shared<Transformer>(opt_.model, device_);
  for (const auto& [name, t] : model_->ordered_parameters()) params_.push_back(t);
  torch::optim::AdamWOptions ao(opt_.optim.lr);
  ao.betas({opt_.optim.beta1, opt_.optim.beta2}).eps(opt_.optim.eps).weight_decay(opt_.optim.weight_decay);
  optim_ = std::make_unique<torch::optim::AdamW>(params_, ao);
  sampler_ = make_sampler(0);
  check_ring_self_attention_passes();
} catch (...) {
  rethrow_from_aten("Trainer::Trainer");
}

Trainer::~Trainer() = default;

// The sampler hands out every sequence of the step (one data-parallel "rank"); step() gives each
// group its share of them.
std::unique_ptr<data::PlanSource> Trainer::make_sampler(int64_t epoch) const {
  const uint64_t seed = opt_.seed + 0x9e3779b97f4a7c15ULL * uint64_t(epoch);  // a new order each epoch
  if (opt_.sampler == SamplerKind::DD) {
    auto dd = std::make_shared<data::Decomposition>(source_->doc_offsets(), opt_.buckets);
    data::SamplerOptions so;
    so.tokens_per_step = opt_.tokens_per_step;
    so.curriculum = opt_.curriculum;
    so.cycles = opt_.cycles;
    so.seed = seed;
    return std::make_unique<data::DDSampler>(dd, so);
  }
  data::ConcatChunkOptions co;
  co.seq_len = opt_.buckets.max_len();
  co.tokens_per_step = opt_.tokens_per_step;
  co.doc_masking = opt_.sampler == SamplerKind::ConcatChunkDocMask;
  co.seed = seed;
  return std::make_unique<data::ConcatChunkSampler>(source_->doc_offsets(), co);
}

data::StepPlan Trainer::next_plan() {
  for (int tries = 0; tries < 2; ++tries) {
    if (auto p = sampler_->next()) return *p;
    sampler_ = make_sampler(++epoch_);  // the epoch is over: the next one, in a new order
  }
  throw InvalidArgument("train: the data holds no full step of " + std::to_string(opt_.tokens_per_step) +
                        " tokens (use a smaller --tokens-per-step or more data)");
}

double Trainer::world_sum(double v) {
  at::Tensor t = at::full({1}, v, at::kDouble);
  world_->all_reduce(t)->wait();
  return t.item<double>();
}

Mask Trainer::mask_for(int64_t T, int64_t seq_len, const std::vector<int64_t>& cu) const {
  LH_CHECK(seq_len > 0 && T % seq_len == 0, "train: a pass of ", T, " tokens is not whole sequences of ", seq_len);
  std::vector<int64_t> sequences;
  for (int64_t o = 0; o <= T; o += seq_len) sequences.push_back(o);
  return masks::make_packed(opt_.mask, sequences, cu, opt_.mask_param, opt_.mask_param2);
}

int64_t Trainer::sequences_per_pass(int groups, int64_t seq_len) const {
  return std::max<int64_t>(1, opt_.tokens_per_step / (int64_t(groups) * opt_.micro_batches * seq_len));
}

int64_t Trainer::loss_chunk_rows() const {
  return train::loss_chunk_rows(opt_.model.vocab, master_dtype(opt_.model.precision), opt_.loss_chunk_bytes);
}

int64_t Trainer::sequences_per_forward(int groups, int64_t seq_len) const {
  return opt_.cp_options.strategy == Strategy::RingSelfAttention ? 1 : sequences_per_pass(groups, seq_len);
}

void Trainer::check_ring_self_attention_passes() {
  if (opt_.cp_options.strategy != Strategy::RingSelfAttention) return;
  std::string why;
  if (opt_.mask != "full" && opt_.mask != "causal") why = "the mask is " + opt_.mask;
  else if (opt_.sampler == SamplerKind::ConcatChunkDocMask) why = "the concat_docmask sampler masks documents";
  const int first = opt_.sampler == SamplerKind::DD ? opt_.buckets.min_log2 : opt_.buckets.max_log2;
  for (int b = first; why.empty() && b <= opt_.buckets.max_log2; ++b) {
    const int64_t len = int64_t(1) << b;
    const int64_t n = sequences_per_pass(degrees_->group_for(len).groups, len);
    if (n > 1) why = detail::str_cat("a pass packs ", n, " sequences of ", len, " tokens");
  }
  if (!why.empty())
    throw InvalidArgument(
        "train: strategy rsa (Ring Self-Attention) runs one sequence per pass under a full or causal mask, as in its "
        "paper, and " + why + "; use ring, tokenring, allgather or ulysses, or --mask causal with one sequence per "
        "pass (--tokens-per-step = the sequence length x data-parallel groups x --micro-batches, --min-log2 = "
        "--max-log2 or --sampler concat)");
}

Trainer::PassInputs Trainer::pass_inputs(const DegreeSchedule::Group& g, const data::Batch& batch) const {
  const int64_t T = batch.num_tokens();
  Mask mask = mask_for(T, batch.plan.seq_len, batch.cu_seqlens);
  // The batch's documents in the plan whatever the mask: RoPE positions restart at each one.
  const CommPtr& cp = g.comm;
  ShardPlan sp = ShardPlan::for_mask(T, mask, opt_.cp_options.layout, cp->size(), cp->rank(), 64,
                                     at::tensor(batch.cu_seqlens, at::kLong));
  at::Tensor tokens = sp.shard(to_long(batch.tokens));
  at::Tensor targets = sp.shard(to_long(batch.targets));  // shifted on the whole sequence, then sharded
  const double n_targets = targets.ne(-100).sum().item<double>();
  return PassInputs{std::move(mask), std::move(sp), std::move(tokens), targets.to(device_), n_targets};
}

Trainer::SharePass Trainer::forward_backward(DegreeSchedule::Group& g, const data::StepPlan& share,
                                             const std::function<data::Batch(data::StepPlan)>& batch_of) {
  // Every pass's inputs first (tokens, targets, shard plans: small beside its activations): the
  // world's targets of the whole step divide every pass's loss.
  std::vector<PassInputs> passes;
  double local_targets = 0;
  for (int m = 0; m < opt_.micro_batches; ++m) {
    data::StepPlan part = data::group_share(share, opt_.micro_batches, m);
    if (part.sequences.empty()) continue;
    passes.push_back(pass_inputs(g, batch_of(std::move(part))));
    local_targets += passes.back().n_targets;
  }
  SharePass pass;
  pass.loss_sum = at::zeros({}, at::kFloat);
  pass.n_targets = world_sum(local_targets);
  pass.passes = static_cast<int>(passes.size());
  for (size_t i = 0; i < passes.size(); ++i) {
    PassInputs& p = passes[i];
    at::Tensor loss = model_->loss_sum(model_->hidden(p.tokens, *g.cp, p.sp, p.mask, &clock_), p.targets, loss_chunk_rows());
    (loss / std::max(1.0, pass.n_targets)).backward();  // gradients add up over the passes
    pass.loss_sum = i == 0 ? loss.detach() : pass.loss_sum + loss.detach();
    p.tokens = p.targets = at::Tensor();  // this pass's inputs are done
  }
  return pass;
}

StepStats Trainer::step() try {
  const auto t0 = Clock::now();
  clock_.reset();
  StepStats s;
  const double lr = learning_rate(opt_.optim, step_);
  for (auto& g : optim_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);

  data::StepPlan whole = next_plan();
  s.seq_len = whole.seq_len;
  DegreeSchedule::Group& g = degrees_->group_for(whole.seq_len);
  s.cp_degree = g.degree;
  const SharePass pass = forward_backward(g, data::group_share(whole, g.groups, g.index),
                                          [&](data::StepPlan part) { return data::build_batch(*source_, std::move(part)); });
  const double n_targets = pass.n_targets;
  s.passes = pass.passes;

  // The world's loss first: every rank takes the same decision on a non-finite one.
  s.loss = world_sum(pass.loss_sum.item<double>()) / std::max(1.0, n_targets);
  const auto ts = Clock::now();
  // Then the gradients (their norm is the world's too): a finite loss can still give a NaN or
  // infinite gradient (an overflow in the backward, a huge learning rate), and one such update
  // would make every parameter NaN.
  std::string nonfinite;
  if (!std::isfinite(s.loss)) {
    nonfinite = detail::str_cat("the loss is ", std::isnan(s.loss) ? "NaN" : (s.loss > 0 ? "+inf" : "-inf"));
  } else {
    s.grad_norm = sync_gradients(params_, *world_, opt_.optim.clip);
    if (!std::isfinite(s.grad_norm))
      nonfinite = detail::str_cat("the gradient norm is ", std::isnan(s.grad_norm) ? "NaN" : "inf",
                                  " (the loss, ", s.loss, ", is finite)");
  }
  if (!nonfinite.empty()) {
    optim_->zero_grad();
    if (!opt_.optim.skip_nonfinite)
      throw NumericalError(detail::str_cat("train: step ", step_ + 1, ": ", nonfinite,
                                           "; stopped before the optimizer step, so the parameters and the last "
                                           "checkpoint are unchanged (--skip-nonfinite drops such steps)"));
    s.skipped = true;
  } else {
    optim_->step();
    optim_->zero_grad();
  }
  s.sync_s = since(ts);  // the all-reduces dominate; the optimiser step is small

  ++step_;
  s.step = step_;
  s.lr = lr;
  s.targets = static_cast<int64_t>(n_targets);
  s.tokens = whole.seq_len * static_cast<int64_t>(whole.sequences.size());
  synchronize(device_);  // the optimiser's kernels may still be queued
  s.seconds = since(t0);
  clock_.settle();  // GPU: the attention's device time, now that the step's kernels are done
  s.attention_s = clock_.forward_s + clock_.backward_s;
  s.comm_wait_s = std::min(clock_.wait_s, s.attention_s);
  s.comm_wait_measured = !clock_.device_timed;
  s.rest_s = std::max(0.0, s.seconds - s.attention_s - s.sync_s);
  return s;
} catch (...) {
  rethrow_from_aten("Trainer::step");
}

std::vector<EvalRow> Trainer::evaluate(int min_log2, int max_log2, int docs, int pairs, uint64_t seed) try {
  at::NoGradGuard no_grad;
  std::vector<EvalRow> rows;
  for (int k = min_log2; k <= max_log2; ++k) {
    EvalRow row;
    row.context = int64_t(1) << k;
    DegreeSchedule::Group& g = degrees_->group_for(row.context);
    const int dp = g.groups, dp_rank = g.index;
    const CommPtr& cp = g.comm;
    // This data-parallel rank's share of the documents (at least one each, so every group runs).
    const int mine = std::max(1, (docs - dp_rank + dp - 1) / dp);
    const EvalSet e = task_eval_set(k, mine, pairs, seed + 1000003ULL * dp_rank);
    // At most a training pass's share of tokens in one forward (and at least one document): the
    // evaluation then needs no more memory than the steps the preflight ran.
    const int64_t L = e.length, per_forward = sequences_per_forward(dp, L);
    const at::Tensor toks = to_long(e.tokens), rows_asked = at::tensor(e.query_rows, at::kLong);
    const at::Tensor is_query = at::zeros({toks.numel()}, at::kBool).index_fill_(0, rows_asked, true);
    const at::Tensor answer = at::zeros_like(toks).index_put_({rows_asked}, toks.index_select(0, rows_asked + 1));
    double correct = 0, total = 0;
    for (int64_t first = 0; first < mine; first += per_forward) {
      const int64_t T = std::min<int64_t>(per_forward, mine - first) * L;
      std::vector<int64_t> cu_v;
      for (int64_t o = 0; o <= T; o += L) cu_v.push_back(o);
      const Mask mask = mask_for(T, L, cu_v);
      const ShardPlan sp =
          ShardPlan::for_mask(T, mask, opt_.cp_options.layout, cp->size(), cp->rank(), 64, at::tensor(cu_v, at::kLong));
      auto here = [&](const at::Tensor& t) { return sp.shard(t.narrow(0, first * L, T)); };
      const at::Tensor hidden = model_->hidden(here(toks), *g.cp, sp, mask);
      const at::Tensor rows = here(is_query).nonzero().squeeze(1);  // the head on the asked rows only
      const at::Tensor guess = model_->logits(hidden.index_select(0, rows.to(hidden.device()))).argmax(-1).cpu();
      correct += guess.eq(here(answer).index_select(0, rows)).sum().item<double>();
      total += static_cast<double>(rows.numel());
    }
    row.correct = static_cast<int64_t>(world_sum(correct));
    row.total = static_cast<int64_t>(world_sum(total));
    rows.push_back(row);
  }
  return rows;
} catch (...) {
  rethrow_from_aten("Trainer::evaluate");
}

std::vector<LossRow> Trainer::validation_loss(data::TokenSource& source, int64_t tokens_per_length) try {
  LH_CHECK(source.vocab_size() <= opt_.model.vocab, "train: the evaluation store's vocabulary (",
           source.vocab_size(), ") does not fit the model's (", opt_.model.vocab, ")");
  LH_CHECK(tokens_per_length >= 1, "train: tokens per length for the evaluation must be >= 1, got ", tokens_per_length);
  at::NoGradGuard no_grad;
  const data::Decomposition dd(source.doc_offsets(), opt_.buckets);
  std::vector<LossRow> rows;
  for (int k = opt_.buckets.min_log2; k <= opt_.buckets.max_log2; ++k) {
    const std::vector<data::Piece>& pieces = dd.bucket(k);
    if (pieces.empty()) continue;
    LossRow row;
    row.context = int64_t(1) << k;
    const int64_t L = row.context;
    data::StepPlan whole;
    whole.seq_len = L;
    whole.bucket = k;
    for (size_t i = 0; i < pieces.size() && int64_t(i) < std::max<int64_t>(1, tokens_per_length / L); ++i)
      whole.sequences.push_back(data::SeqSlice{pieces[i].start, L});
    row.sequences = static_cast<int64_t>(whole.sequences.size());
    DegreeSchedule::Group& g = degrees_->group_for(L);
    const data::StepPlan share = data::group_share(whole, g.groups, g.index);
    // At most a training pass's share of sequences in one forward (and at least one).
    const int64_t n = static_cast<int64_t>(share.sequences.size()), per_forward = sequences_per_forward(g.groups, L);
    double loss_sum = 0, targets = 0;
    for (int64_t first = 0; first < n; first += per_forward) {
      data::StepPlan part = share;
      part.sequences.assign(share.sequences.begin() + first, share.sequences.begin() + std::min(n, first + per_forward));
      const PassInputs p = pass_inputs(g, data::build_batch(source, std::move(part)));
      loss_sum += model_->loss_sum(model_->hidden(p.tokens, *g.cp, p.sp, p.mask), p.targets, loss_chunk_rows())
                      .item<double>();
      targets += p.n_targets;
    }
    at::Tensor sums = at::tensor({loss_sum, targets}, at::kDouble);
    world_->all_reduce(sums)->wait();
    row.targets = static_cast<int64_t>(sums[1].item<double>());
    row.loss = row.targets > 0 ? sums[0].item<double>() / sums[1].item<double>() : 0;
    rows.push_back(row);
  }
  return rows;
} catch (...) {
  rethrow_from_aten("Trainer::validation_loss");
}

void Trainer::save(const std::string& path) try {
  if (world_->rank() == 0) {
    CheckpointFile c;
    c.strings["format"] = kFormat;
    c.strings["model_shape"] = opt_.model.shape();
    c.strings["dtype"] = to_string(opt_.model.precision);
    c.strings["rope_theta"] = rope_theta_string(opt_.model.rope_theta);
    c.strings["sampler"] = to_string(opt_.sampler);
    c.strings["sampler_state"] = sampler_->save_state();
    c.strings["step"] = std::to_string(step_);
    c.strings["world_size"] = std::to_string(world_->size());
    c.strings["epoch"] = std::to_string(epoch_);
    c.tensors.emplace_back("rng", rng_.get_state());
    for (const auto& [name, t] : model_->ordered_parameters()) {
      c.tensors.emplace_back("param." + name, t);
      auto it = optim_->state().find(t.unsafeGetTensorImpl());
      if (it == optim_->state().end()) continue;
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      c.strings["adam." + name + ".step"] = std::to_string(st.step());
      c.tensors.emplace_back("adam." + name + ".exp_avg", st.exp_avg());
      c.tensors.emplace_back("adam." + name + ".exp_avg_sq", st.exp_avg_sq());
    }
    write_checkpoint(path, c);
  }
  world_->barrier()->wait();
} catch (...) {
  rethrow_from_aten("Trainer::save");
}

void Trainer::load(const std::string& path) try {
  CheckpointFile c = read_checkpoint(path);
  auto expect = [&](const std::string& key, const std::string& want, const char* what) {
    const std::string& got = c.string(key);
    if (got != want)
      throw InvalidArgument("checkpoint " + path + ": " + what + " differs: the checkpoint has '" + got +
                            "', this run has '" + want + "'");
  };
  expect("format", kFormat, "format");
  expect("model_shape", opt_.model.shape(), "model shape");
  if (!c.strings.count("dtype")) c.strings["dtype"] = to_string(Precision::Fp32);  // written before --dtype
  expect("dtype", to_string(opt_.model.precision), "dtype (--dtype)");
  if (!c.strings.count("rope_theta")) c.strings["rope_theta"] = rope_theta_string(10000);  // written before --rope-theta
  expect("rope_theta", rope_theta_string(opt_.model.rope_theta), "rotary base (--rope-theta)");
  expect("sampler", to_string(opt_.sampler), "sampler");
  expect("world_size", std::to_string(world_->size()), "world size (ranks)");
  at::NoGradGuard no_grad;
  for (const auto& [name, t] : model_->ordered_parameters()) {
    const at::Tensor& src = c.tensor("param." + name);
    LH_CHECK(src.sizes() == t.sizes() && src.scalar_type() == t.scalar_type(), "checkpoint ", path, ": parameter ",
             name, " is ", src.scalar_type(), " of shape ", src.sizes(), ", the model expects ", t.scalar_type(), " of ",
             t.sizes());
    t.copy_(src);
  }
  optim_->state().clear();
  for (const auto& [name, t] : model_->ordered_parameters()) {
    auto it = c.strings.find("adam." + name + ".step");
    if (it == c.strings.end()) continue;
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(std::stoll(it->second));
    st->exp_avg(c.tensor("adam." + name + ".exp_avg").to(t.options(), /*non_blocking=*/false, /*copy=*/true));
    st->exp_avg_sq(c.tensor("adam." + name + ".exp_avg_sq").to(t.options(), /*non_blocking=*/false, /*copy=*/true));
    optim_->state()[t.unsafeGetTensorImpl()] = std::move(st);
  }
  epoch_ = std::stoll(c.string("epoch"));
  sampler_ = make_sampler(epoch_);
  sampler_->restore_state(c.string("sampler_state"));
  step_ = std::stoll(c.string("step"));
  rng_.set_state(c.tensor("rng"));
} catch (...) {
  rethrow_from_aten("Trainer::load");
}

}  // namespace longhaul::train

#include "train/preflight.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/DeviceAccelerator.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <optional>
#include <sstream>
#include <unordered_set>

#include "core/aten_boundary.h"
#include "core/data_limit.h"
#include "core/errors.h"
#include "core/host_memory.h"
#include "core/resident_memory.h"
#include "data/format.h"
#include "data/sampler.h"
#include "train/device.h"
#include "train/grad_sync.h"
#include "train/host_share.h"
#include "train/trainer.h"
#include "train/update_rehearsal.h"

namespace longhaul::train {
namespace {

// Peak memory over a scope: the CUDA caching allocator's allocated bytes on `device`, or the
// process's resident set on the CPU.
class PeakMemory {
 public:
  explicit PeakMemory(const c10::Device& device) : device_(device) {
    if (device_.is_cuda()) {
      synchronize(device_);
      at::accelerator::resetPeakStats(device_.index());
      before_ = double(at::accelerator::getDeviceStats(device_.index()).allocated_bytes[0].current);
      available_ = double(at::accelerator::getMemoryInfo(device_.index()).first);
    } else {
      rss_.emplace();
      before_ = rss_->before_mib() * double(1 << 20);
      available_ = available_memory_bytes();
    }
  }
  double before() const { return before_; }
  double available() const { return available_; }
  double peak() const {
    if (!device_.is_cuda()) return before_ + rss_->mib() * double(1 << 20);
    synchronize(device_);
    return double(at::accelerator::getDeviceStats(device_.index()).allocated_bytes[0].peak);
  }

 private:
  c10::Device device_;
  std::optional<PeakRssGrowth> rss_;
  double before_ = 0, available_ = 0;
};

}  // namespace

std::vector<PreflightShape> preflight_shapes(const std::vector<int64_t>& lengths,
                                             const std::function<int(int64_t)>& degree, int64_t tokens_per_step,
                                             int micro_batches) {
  std::vector<PreflightShape> shapes;
  if (lengths.empty()) return shapes;
  auto shape = [&](int64_t L) { return PreflightShape{L, degree(L), tokens_per_step / L, micro_batches}; };
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  shapes.push_back(shape(longest));
  PreflightShape widest = shapes.front();
  for (int64_t L : lengths) {
    const PreflightShape s = shape(L);
    const int64_t shard = s.seq_len / s.degree, best = widest.seq_len / widest.degree;
    if (shard > best || (shard == best && s.seq_len > widest.seq_len)) widest = s;
  }
  if (widest.seq_len != longest) shapes.push_back(widest);
  return shapes;
}

data::Batch synthetic_batch(int64_t seq_len, int64_t sequences, int64_t vocab, uint64_t seed) {
  LH_CHECK(seq_len >= 1 && sequences >= 0 && vocab >= 1, "synthetic_batch: need seq_len >= 1, sequences >= 0 and ",
           "vocab >= 1, got ", seq_len, ", ", sequences, ", ", vocab);
  data::Batch b;
  b.plan.seq_len = seq_len;
  for (int64_t j = 0; j < sequences; ++j) b.plan.sequences.push_back({j * seq_len, seq_len});
  const int64_t T = seq_len * sequences;
  at::Tensor t = at::randint(vocab, {T}, at::make_generator<at::CPUGeneratorImpl>(seed), at::kInt);
  b.tokens.assign(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + T);
  b.targets.resize(T);
  b.positions.resize(T);
  for (int64_t i = 0; i < T; ++i) {
    const int64_t p = i % seq_len;
    b.positions[i] = static_cast<int32_t>(p);
    b.targets[i] = p + 1 < seq_len ? b.tokens[i + 1] : data::kIgnoreTarget;
  }
  for (int64_t o = 0; o <= T; o += seq_len) b.cu_seqlens.push_back(o);
  return b;
}

std::string describe(const PreflightShape& s) {
  std::ostringstream os;
  os << s.seq_len << "-token sequences at cp " << s.degree << " (" << s.sequences << " per step";
  if (s.micro_batches > 1) os << ", " << s.micro_batches << " micro-batches";
  os << ")";
  return os.str();
}

std::string describe(const PreflightResult& r) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(2);
  os << describe(r.shape) << ": peak " << memory_size(r.peak_bytes)
     << (r.device_memory ? " allocated on the GPU" : " resident") << " (the steps added " << memory_size(r.step_bytes)
     << ", rank " << r.busiest_rank << "), " << memory_size(r.available_bytes)
     << (r.device_memory ? " free on the device" : " available on the host") << " before it";
  if (r.ceiling_bytes > 0) os << ", each process held to " << memory_size(r.ceiling_bytes);
  os << "; " << r.seconds << " s";
  return os.str();
}

std::string out_of_memory_message(const PreflightShape& s, int rank, const std::string& what,
                                  const std::string& ceiling) {
  return detail::str_cat("train: preflight: a step of ", describe(s), " ran out of memory on rank ", rank,
                         ", before any training step (", what, ")",
                         ceiling.empty() ? "" : "; the preflight ran with " + ceiling +
                                                    ", so that a step the host cannot hold fails here and not "
                                                    "under the OOM killer",
                         ". ", fewer_tokens_advice(), "; --no-preflight skips this check");
}

std::string fewer_tokens_advice() {
  return "Fewer tokens per rank fit: a lower --max-log2 or --tokens-per-step, more --micro-batches (while a rank's "
         "share holds several sequences), more ranks per sequence (--cp, or --cp auto with --memory-gib), or "
         "--checkpoint-blocks";
}

std::string step_out_of_memory_message(const std::string& stage, int rank, const std::string& what,
                                       double held_bytes, const HostShare& share, const std::string& checkpoint) {
  return detail::str_cat("train: ", stage, " ran out of memory on rank ", rank, " (", what, "); ",
                         describe_step_share(held_bytes, share),
                         ", so that a step the host cannot hold fails here and not under the OOM killer; ",
                         checkpoint, ". ", fewer_tokens_advice(),
                         "; --release-host-memory keeps less freed memory (slower); --no-host-ceiling runs the steps "
                         "without the ceiling");
}

std::string headroom_warning(const PreflightResult& r) {
  if (r.device_memory || !(r.ceiling_bytes > 0) || r.step_bytes * kKeptHeapGrowth <= r.ceiling_bytes) return "";
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(0);
  os << "train: warning: the preflight's steps of " << describe(r.shape) << " added " << memory_size(r.step_bytes)
     << ", " << 100.0 * r.step_bytes / r.ceiling_bytes << "% of the " << memory_size(r.ceiling_bytes)
     << " a process may add; the heap a run keeps has settled up to " << std::setprecision(1) << kKeptHeapGrowth
     << "x above the preflight's peak, so a later step may stop the run (exit 7). Fewer tokens per rank, "
        "or --release-host-memory (slower), hold less";
  return os.str();
}

std::vector<PreflightShape> Trainer::preflight_shapes() const {
  std::vector<int64_t> lengths;
  if (const auto* dd = dynamic_cast<const data::DDSampler*>(sampler_.get())) {
    const data::BucketRange range = dd->decomposition().range();
    for (int i = range.min_log2; i <= range.max_log2; ++i)
      if (dd->decomposition().bucket_size(i) >= dd->batch_pieces(i)) lengths.push_back(int64_t(1) << i);
  } else {
    lengths.push_back(opt_.buckets.max_len());
  }
  return train::preflight_shapes(lengths, [&](int64_t L) { return degrees_->degree(L); }, opt_.tokens_per_step,
                                 opt_.micro_batches);
}

std::vector<PreflightResult> Trainer::preflight(const std::vector<PreflightShape>& shapes) {
  std::vector<PreflightResult> results;
  if (shapes.empty()) return results;
  // The optimiser state as the first update would make it (step 0, zero moments), made now so the
  // peaks count it; that update finds it and goes on as if it had made it.
  std::unordered_set<const void*> fresh;
  for (const at::Tensor& p : params_) {
    if (optim_->state().count(p.unsafeGetTensorImpl())) continue;  // resumed: the checkpoint's
    fresh.insert(p.unsafeGetTensorImpl());
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(0);
    state->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
    state->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
    optim_->state()[p.unsafeGetTensorImpl()] = std::move(state);
  }
  // On the CPU each process gets its share of its host's memory as a ceiling, set by the step alone
  // (a CUDA step's memory is the device's: no ceiling).
  const HostShare share = device_.is_cuda() ? HostShare{} : host_share(*world_);
  if (share.limited) start_thread_pool();
  for (const PreflightShape& shape : shapes) {
    PreflightResult r;
    r.shape = shape;
    r.device_memory = device_.is_cuda();
    double peak = 0, before = 0, available = 0;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      DegreeSchedule::Group& g = degrees_->group_for(shape.seq_len);
      // This group's share of the step's sequences, as step() cuts a real one.
      data::StepPlan whole;
      whole.seq_len = shape.seq_len;
      whole.sequences.resize(static_cast<size_t>(shape.sequences), data::SeqSlice{0, shape.seq_len});
      uint64_t seed = opt_.seed + 0x5eed + uint64_t(g.index) * uint64_t(opt_.micro_batches);
      const PeakMemory memory(device_);
      before = memory.before();
      available = memory.available();
      std::optional<ScopedDataLimit> ceiling;
      if (share.limited) ceiling.emplace(static_cast<int64_t>(share.bytes));
      for (int s = 0; s < kPreflightSteps; ++s) {
        forward_backward(g, data::group_share(whole, g.groups, g.index), [&](const data::StepPlan& part) {
          return synthetic_batch(shape.seq_len, static_cast<int64_t>(part.sequences.size()), opt_.model.vocab, seed++);
        });
        // The world's norm: every rank takes the same decision.
        if (std::isfinite(sync_gradients(params_, *world_, opt_.optim.clip))) rehearse_update(*optim_, fresh);
        optim_->zero_grad();
      }
      ceiling.reset();
      peak = memory.peak();
      optim_->zero_grad();  // as before the preflight: no gradient is kept
    } catch (...) {
      optim_->zero_grad();
      try {
        rethrow_from_aten("Trainer::preflight");  // the host's failed allocations become torch's out-of-memory type
      } catch (const c10::OutOfMemoryError& e) {
        throw c10::OutOfMemoryError({"Trainer::preflight", __FILE__, static_cast<uint32_t>(__LINE__)},
                                    out_of_memory_message(shape, world_->rank(), e.what_without_backtrace(),
                                                          share.limited ? describe(share) : ""));
      }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The world's largest peak and step growth, the rank with the largest growth, the least memory available.
    const double ceiling = share.limited ? share.bytes : INFINITY;  // none: no bound on the least
    at::Tensor v = at::tensor({peak, peak - before, -available, r.seconds, -ceiling}, at::kDouble);
    world_->all_reduce(v, ReduceOp::Max)->wait();
    r.peak_bytes = v[0].item<double>();
    r.step_bytes = v[1].item<double>();
    r.available_bytes = -v[2].item<double>();
    r.seconds = v[3].item<double>();
    r.ceiling_bytes = std::isfinite(v[4].item<double>()) ? -v[4].item<double>() : 0.0;
    at::Tensor who = at::full({1}, peak - before == r.step_bytes ? double(world_->rank()) : -1.0, at::kDouble);
    world_->all_reduce(who, ReduceOp::Max)->wait();
    r.busiest_rank = static_cast<int>(who.item<double>());
    results.push_back(r);
  }
  return results;
}

}  // namespace longhaul::train

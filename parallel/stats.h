// What a CP call cost: bytes this rank sent (forward, backward) and the peak of the tensor bytes
// the strategy holds (inputs, outputs, communication buffers, accumulators, score matrices).
#pragma once

#include <algorithm>
#include <cstdint>

#include <ATen/core/Tensor.h>

namespace longhaul {

struct CpStats {
  int64_t bytes_sent_fwd = 0;
  int64_t bytes_sent_bwd = 0;
  int64_t tracked_bytes = 0;       // held now
  int64_t peak_tracked_bytes = 0;  // high-water mark since reset()

  void reset() { *this = CpStats(); }
  void hold(int64_t bytes) {
    tracked_bytes += bytes;
    peak_tracked_bytes = std::max(peak_tracked_bytes, tracked_bytes);
  }
  void release(int64_t bytes) { tracked_bytes -= bytes; }
};

// Counts a tensor's bytes as held for the lifetime of this object.
class Tracked {
 public:
  Tracked(CpStats& stats, at::Tensor t) : stats_(&stats), t_(std::move(t)), bytes_(bytes_of(t_)) { stats_->hold(bytes_); }
  ~Tracked() {
    if (stats_) stats_->release(bytes_);
  }
  Tracked(Tracked&& o) noexcept : stats_(o.stats_), t_(std::move(o.t_)), bytes_(o.bytes_) { o.stats_ = nullptr; }
  Tracked& operator=(Tracked&& o) noexcept {
    if (this != &o) {
      if (stats_) stats_->release(bytes_);
      stats_ = o.stats_;
      t_ = std::move(o.t_);
      bytes_ = o.bytes_;
      o.stats_ = nullptr;
    }
    return *this;
  }
  Tracked(const Tracked&) = delete;
  at::Tensor& operator*() { return t_; }
  at::Tensor* operator->() { return &t_; }
  const at::Tensor& get() const { return t_; }
  static int64_t bytes_of(const at::Tensor& t) {
    return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
  }

 private:
  CpStats* stats_;
  at::Tensor t_;
  int64_t bytes_;
};

}  // namespace longhaul

// ContextParallel: attention over a sequence sharded across a CP group (docs/parallel.md).
// forward/backward take and return this rank's shards; `attention` is the autograd-aware form
// for LibTorch training. Every call is a collective over the group: all ranks call forward and
// backward equally often, even a rank whose queries see no key.
#pragma once

#include <functional>
#include <memory>

#include "attention/attention.h"
#include "parallel/options.h"
#include "parallel/shard_plan.h"
#include "parallel/stats.h"
#include "runtime/comm/comm.h"

namespace longhaul {

class CpStrategy;

class ContextParallel {
 public:
  ContextParallel(CommPtr cp_group, Options options);
  ~ContextParallel();

  // q [Tl, H, D], k/v [Tl, H_kv, D] (Tl = plan.local_rows()) → out [Tl, H, D] in q's dtype and
  // lse [H, Tl] float32 (float64 for float64 inputs).
  AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const ShardPlan& plan,
                          const Mask& mask);
  // Grads of the local shards in the input dtype (accumulated in float32).
  AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& out, const at::Tensor& lse, const ShardPlan& plan, const Mask& mask);
  // The backward of a forward call the group agreed on, given that call's plan, mask and saved
  // q, k, v, out and lse (an autograd function's backward, C++ or Python): this rank's own checks
  // only, without the group's agreement collective, so each call pays one agreement, not two (on
  // a GPU that collective also waits for the stream).
  AttentionGrads backward_of_agreed_forward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                            const ShardPlan& plan, const Mask& mask);
  // Autograd-aware: out [Tl, H, D]; loss.backward() runs the strategy's backward (a collective).
  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const ShardPlan& plan,
                       const Mask& mask);

  const Options& options() const { return options_; }
  const CommPtr& group() const { return comm_; }
  CpStats& stats() { return stats_; }

 private:
  void check_call(const char* fn, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const ShardPlan& plan, const Mask& mask);
  // check_call (and `more`, this call's own checks) on this rank, then, when check_group, the
  // group's agreement: every rank fails together, an invalid one with its own error.
  void check_everywhere(const char* fn, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const ShardPlan& plan, const Mask& mask, bool check_group,
                        const std::function<void()>& more = {});
  double scale_for(const at::Tensor& q) const;  // options' scale, or 1/sqrt(D) when it is 0
  AttentionGrads run_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& out, const at::Tensor& lse, const ShardPlan& plan, const Mask& mask,
                              bool check_group);

  CommPtr comm_;
  Options options_;
  std::unique_ptr<CpStrategy> strategy_;
  CpStats stats_;
};

}  // namespace longhaul

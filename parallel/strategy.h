// The interface every CP strategy implements, and what one call hands it.
#pragma once

#include <memory>

#include "attention/attention.h"
#include "core/dtypes.h"
#include "core/host_to_device.h"
#include "parallel/options.h"
#include "parallel/shard_plan.h"
#include "parallel/stats.h"
#include "runtime/comm/comm.h"

namespace longhaul {

struct CpCall {
  Communicator& comm;
  const ShardPlan& plan;
  const Mask& mask;
  double scale;   // resolved (> 0)
  bool overlap;   // post transfers before computing
  CpStats& stats;
};

class CpStrategy {
 public:
  virtual ~CpStrategy() = default;
  // Local shards in; out [Tl, H, D] float32 (float64 for float64 inputs), lse [H, Tl].
  virtual AttentionOutput forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const CpCall& call) = 0;
  // out/lse: this rank's merged forward results. Grads float32 (float64 for float64 inputs).
  virtual AttentionGrads backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                                  const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                  const CpCall& call) = 0;
};

std::unique_ptr<CpStrategy> make_ring_self_attention();
std::unique_ptr<CpStrategy> make_ring();
std::unique_ptr<CpStrategy> make_allgather_kv();
std::unique_ptr<CpStrategy> make_token_ring();
std::unique_ptr<CpStrategy> make_ulysses();
std::unique_ptr<CpStrategy> make_hybrid(int ulysses_degree, Strategy inner);


// Row indices are built on the CPU from the plan; index ops want them on the indexed tensor's
// device (CUDA shards), copied there without stalling the host.
inline at::Tensor rows_on(const at::Tensor& idx, const at::Tensor& x) { return host_to_device(idx, x.device()); }

}  // namespace longhaul

// GPU-only yardsticks of the kernel benchmark: the bare ATen flash kernel on the same inputs (what
// the CUDA path wraps; the planning, LSE fix-up, merges and conversions around it are the
// difference), and the merge kernel's memory bandwidth against a device-to-device copy.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "benchmarks/common/timing.h"

namespace longhaul::bench {

// Whether the bare flash kernel can run this configuration (fp16/bf16 on CUDA, full or causal).
bool bare_flash_applies(const at::Tensor& q, const std::string& mask_name);

// The bare ATen kernel our path calls for a self block, on the same [T, H, D] inputs: cuDNN's
// fused attention where the CUDA path prefers it, else at::_flash_attention_forward/_backward
// with the inputs as one varlen sequence. The benchmark times it interleaved with ours, run by
// run, so both see the same clocks.
class BareFlash {
 public:
  BareFlash(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& dout, bool causal);
  void forward();
  void backward();  // after forward()
  const char* kernel() const { return cudnn_ ? "cudnn" : "flash"; }

 private:
  at::Tensor q_, k_, v_, dout_, cu_q_, cu_k_, rng_state_, unused_, out_, lse_;
  bool causal_, cudnn_ = false;
  double scale_;
};

struct MergeBandwidth {
  int64_t tokens = 0, heads = 0, head_dim = 0;
  double merge_ms = NAN, copy_ms = NAN;        // per call, medians
  double merge_gb_per_s = NAN, copy_gb_per_s = NAN;  // bytes read + written
};
// merge_into on float32 accumulators [T, H, D] with a partial of `partial` dtype, and a copy of a
// float32 tensor of the accumulator's size, each repeated `repeat` times per timed run.
MergeBandwidth measure_merge_bandwidth(int64_t t, int64_t h, int64_t d, at::ScalarType partial, const TimingPlan& plan,
                                       int repeat = 20);

}  // namespace longhaul::bench

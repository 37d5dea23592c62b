// What the fused-kernel routes of the CUDA adapter share: varlen row bookkeeping, the head-dim
// padding the fused kernels need, the LSE fix-up and merge launches (our kernels, kernels.h), and
// the float32 gradient accumulators of one backward call.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "attention/attention.h"
#include "attention/cuda/block_plan.h"
#include "core/errors.h"

namespace longhaul::cuda::routes {

// A route's switch, the environment variable `var` = `value`: `unset` for no value or "", else the
// mode named by value in `modes` (one table per switch, its names as the switch spells them); any
// other value is an InvalidArgument naming the variable and `expected`.
template <typename Mode, std::size_t N>
Mode parse_switch(const char* var, const char* value, Mode unset, const std::pair<const char*, Mode> (&modes)[N],
                  const char* expected) {
  const std::string v = value ? value : "";
  if (v.empty()) return unset;
  for (const auto& [name, mode] : modes)
    if (v == name) return mode;
  throw InvalidArgument(std::string(var) + "=" + v + ": expected " + expected);
}
// The first name `modes` gives `mode` (what longhaul info prints).
template <typename Mode, std::size_t N>
const char* switch_name(Mode mode, const std::pair<const char*, Mode> (&modes)[N]) {
  for (const auto& [name, m] : modes)
    if (m == mode) return name;
  return "?";
}

// Deterministic inputs [rows, heads, d] for the routes' one-time probes (sin of a ramp times f, in
// opt's dtype and device): no draw from the caller's RNG state.
at::Tensor probe_input(int64_t rows, int64_t heads, int64_t d, double f, const at::TensorOptions& opt);

// Whether an exception from a kernel call is not the kernel refusing the call: a device fault (the
// context is unusable) or running out of memory (transient: the same shape may fit later). Routes
// rethrow these instead of remembering the shape (or the route) as refused.
bool not_a_refusal(const std::exception& e);

// What a route's one-time probe found: whether the route runs and agrees with its reference
// kernel, and why not (routes may extend it with what the probe learned).
struct ProbeVerdict {
  bool ok = false;
  std::string why;
};

// The combination a probe's verdict holds for: device, dtype, padded head dim, head grouping.
struct ProbeKey {
  int device, dtype;
  int64_t padded_dim;
  bool gqa;
  std::string description;  // "BFloat16, head dim 128, GQA"
  bool operator<(const ProbeKey& o) const {
    return std::tie(device, dtype, padded_dim, gqa) < std::tie(o.device, o.dtype, o.padded_dim, o.gqa);
  }
};
ProbeKey probe_key(const at::Tensor& q, const at::Tensor& k);

// The verdicts of one route's probe: the first call for a combination runs
// `run(options, padded head dim, kv heads)` under a lock (2 query heads, so 1 KV head is GQA), and
// `message` (when given) reports a failed verdict once. A probe that takes over a second (graph
// builds) says so on stderr, so a slow first step is explained.
template <typename Verdict>
class ProbeCache {
 public:
  using Run = std::function<Verdict(const at::TensorOptions&, int64_t, int64_t)>;
  using Message = std::function<void(const Verdict&, const std::string& combination)>;
  ProbeCache(std::string route, Run run, Message message)
      : route_(std::move(route)), run_(std::move(run)), message_(std::move(message)) {}
  const Verdict& verdict(const at::Tensor& q, const at::Tensor& k) {
    ProbeKey key = probe_key(q, k);
    const std::lock_guard<std::mutex> lock(mutex_);
    auto it = verdicts_.find(key);
    if (it == verdicts_.end()) {
      const auto start = std::chrono::steady_clock::now();
      it = verdicts_.emplace(key, run_(q.options(), key.padded_dim, key.gqa ? 1 : 2)).first;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (seconds > 1.0)
        std::cerr << "longhaul: the " << route_ << " probe (" << key.description << ") took " << seconds << " s\n";
      if (!it->second.ok && message_) message_(it->second, key.description);
    }
    return it->second;
  }

 private:
  std::string route_;
  Run run_;
  Message message_;
  std::mutex mutex_;
  std::map<ProbeKey, Verdict> verdicts_;
};
// ‖a − b‖ / ‖b‖ in float32, what the probes compare.
double relative_difference(const at::Tensor& a, const at::Tensor& b);
// The largest of a probe's differences, NaN if any is NaN (std::max would drop a NaN that is not
// first, and a probe would pass a kernel that returns NaN gradients).
double worst_difference(std::initializer_list<double> differences);
// The fastest of three runs of `run` on the current stream after one untimed (graph building,
// autotuning), in ms of device time: how a probe times two kernels.
double best_of_three_ms(const std::function<void()>& run);
// A timed probe's verdict: "" when cuDNN was faster, else "FlashAttention-2 is faster here
// (`times`)"; either way one line "longhaul: `route`: `times`" on stderr (": on" when cuDNN won).
std::string faster_than_flash_or_why(const std::string& route, const std::string& times, double cudnn_ms,
                                     double flash_ms);
// Whether a probe's worst difference is bf16 rounding (~4e-3) and not an error; NaN fails.
inline bool probe_agrees(double worst) { return worst < 3e-2; }

// A head dim zero-padded to a multiple of 8 (what the fused kernels need; exact for q·k and v).
inline int64_t padded_head_dim(int64_t d) { return d + (8 - d % 8) % 8; }
// x with its head dim padded so, and unit-stride (FlashAttention-2 refuses any other).
at::Tensor pad_head_dim(const at::Tensor& x);

// Row indices of a range of pieces (q or k side) plus int32 cumulative lengths, on the device.
struct Rows {
  at::Tensor index;        // int64 [total]
  at::Tensor cu;           // int32 [pieces + 1]
  int64_t total = 0, max_len = 0;
  bool identity = false;   // the rows are exactly 0..T-1 in order: no gather needed
};
Rows piece_rows(const std::vector<Piece>& pieces, size_t begin, size_t end, bool q_side, int64_t t_all,
                const at::Device& dev);
at::Tensor gather(const at::Tensor& x, const Rows& r);
// Whether the element offsets (rows x heads x head dim) of both sides' packed rows fit the int32
// that cuDNN's ragged offsets are (FlashAttention-2 counts rows and takes what does not).
bool ragged_offsets_fit(const Rows& qr, const at::Tensor& q, const Rows& kr, const at::Tensor& k);

// Normalises an ATen logsumexp (any strides, [H, rows] after squeezing) to [H, rows] float32 and
// zeroes the out rows of rows that saw no key (out is made contiguous first if it is not).
at::Tensor fix_lse(const at::Tensor& aten_lse, at::Tensor& out, int64_t rows);

// Merges (out_b, lse_b) into float32 accumulators out_acc [T, H, D], lse_acc [H, T] (our kernel).
void launch_merge(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b);
// The same for the given (disjoint) q rows only.
void merge_rows(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& rows, bool identity,
                const at::Tensor& out_b, const at::Tensor& lse_b);

// ATen's backward kernels treat lse = +inf as "P = 0" (flash's own empty-row value); longhaul
// writes -inf there, which would give exp(S + inf) = inf inside them.
at::Tensor lse_for_aten(const at::Tensor& lse);

// A varlen kernel's output for all pieces of a group: out [rows, H, Dp] (input dtype) and the
// fixed-up lse [H, rows] of the q rows `qr` (pieces in order).
struct GroupOutput {
  at::Tensor out, lse;
  Rows qr;
};
// Merges a group's output into the float32 accumulators, one merge per layer of the group (the
// rows of a layer are disjoint).
void merge_group(const PieceGroup& g, const GroupOutput& r, at::Tensor& out_acc, at::Tensor& lse_acc);

// Gradient accumulators (float32) of one backward call. Allocated (zeroed) on first
// accumulation, so a whole-block backward can hand over the kernel's own gradients instead.
struct GradAcc {
  at::Tensor dq, dk, dv;
  std::array<int64_t, 3> q_shape, kv_shape;
  at::TensorOptions options;
  void allocate_if_needed();
};

// For kernels called once per piece: runs `piece_forward` on each piece of g (its out [m, H, Dp],
// fixed-up lse [H, m]) and merges the result into the float32 accumulators by the piece's q rows.
void merge_each_piece(const PieceGroup& g, int64_t tq, at::Tensor& out_acc, at::Tensor& lse_acc,
                      const std::function<AttentionOutput(const Piece&)>& piece_forward);

// Adds one piece's float32 gradients (dq [m, H, d], dk and dv [n, H_kv, d]) into acc at its rows.
void add_piece_grads(const Piece& p, const AttentionGrads& grads, GradAcc& acc);

// Adds a varlen backward's gradients (rows qr / kr of the block, head dim padded) into acc; the
// kernel's own gradients become the answer when the group covers the whole block.
void add_group_grads(const Rows& qr, const Rows& kr, const at::Tensor& dq, const at::Tensor& dk,
                     const at::Tensor& dv, GradAcc& acc);

}  // namespace longhaul::cuda::routes

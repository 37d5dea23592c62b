#include "attention/cuda/route_common.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>

#include "attention/cuda/kernels.h"
#include "core/errors.h"
#include "core/host_to_device.h"
#include "core/worst_error.h"

namespace longhaul::cuda::routes {
namespace {

kernels::DType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kernels::DType::Float32;
    case at::kHalf: return kernels::DType::Float16;
    case at::kBFloat16: return kernels::DType::BFloat16;
    default: throw Unsupported(detail::str_cat("cuda attention kernels: dtype ", t, " is not supported"));
  }
}

}  // namespace

at::Tensor probe_input(int64_t rows, int64_t heads, int64_t d, double f, const at::TensorOptions& opt) {
  return at::sin(at::arange(rows * heads * d, opt.dtype(at::kFloat)) * f).view({rows, heads, d}).to(opt.dtype());
}

ProbeKey probe_key(const at::Tensor& q, const at::Tensor& k) {
  const int64_t dp = padded_head_dim(q.size(2));
  const bool gqa = q.size(1) != k.size(1);
  return {static_cast<int>(q.get_device()), static_cast<int>(q.scalar_type()), dp, gqa,
          detail::str_cat(q.scalar_type(), ", head dim ", dp, gqa ? ", GQA" : "")};
}

double best_of_three_ms(const std::function<void()>& run) {
  run();
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 3; ++i) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);  // the default flags time nothing
    start.record();
    run();
    stop.record();
    stop.synchronize();
    best = std::min(best, static_cast<double>(start.elapsed_time(stop)));
  }
  return best;
}

std::string faster_than_flash_or_why(const std::string& route, const std::string& times, double cudnn_ms,
                                     double flash_ms) {
  const bool on = cudnn_ms < flash_ms;
  std::cerr << "longhaul: " << route << ": " << times << (on ? ": on\n" : "\n");
  return on ? std::string() : "FlashAttention-2 is faster here (" + times + ")";
}

bool ragged_offsets_fit(const Rows& qr, const at::Tensor& q, const Rows& kr, const at::Tensor& k) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  return qr.total * q.size(1) * q.size(2) <= kMax && kr.total * k.size(1) * k.size(2) <= kMax;
}

double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kFloat), y = b.to(at::kFloat);
  return ((x - y).norm() / (y.norm() + 1e-6)).item<double>();
}

double worst_difference(std::initializer_list<double> differences) {
  double worst = 0;
  for (const double d : differences) worst = worst_error(worst, d);
  return worst;
}

at::Tensor pad_head_dim(const at::Tensor& x) {
  const int64_t pad = padded_head_dim(x.size(-1)) - x.size(-1);
  if (pad != 0) return at::constant_pad_nd(x, {0, pad});
  return x.stride(-1) == 1 ? x : x.contiguous();
}

Rows piece_rows(const std::vector<Piece>& pieces, size_t begin, size_t end, bool q_side, int64_t t_all,
                const at::Device& dev) {
  Rows r;
  auto row_of = [&](size_t i) { return q_side ? pieces[i].q_row : pieces[i].k_row; };
  auto len_of = [&](size_t i) { return q_side ? pieces[i].m : pieces[i].n; };
  // Identity: the pieces tile rows 0..T-1 in order (a whole block, or a zigzag shard's two
  // halves): no host-side index and no gather.
  int64_t next = 0;
  for (size_t i = begin; i < end && next >= 0; ++i) next = row_of(i) == next ? next + len_of(i) : -1;
  r.identity = next == t_all;
  std::vector<int64_t> idx;
  std::vector<int32_t> cu{0};
  for (size_t i = begin; i < end; ++i) {
    const int64_t row = row_of(i), len = len_of(i);
    if (!r.identity)
      for (int64_t j = 0; j < len; ++j) idx.push_back(row + j);
    r.total += len;
    r.max_len = std::max(r.max_len, len);
    LH_CHECK(r.total < std::numeric_limits<int32_t>::max(), "cuda attention: more than 2^31 rows in one varlen call");
    cu.push_back(static_cast<int32_t>(r.total));
  }
  const auto long_opt = at::TensorOptions().dtype(at::kLong).device(dev);
  r.index = r.identity ? at::arange(t_all, long_opt) : host_to_device(at::tensor(idx, at::kLong), dev);
  r.cu = host_to_device(at::tensor(cu, at::kInt), dev);
  return r;
}

bool not_a_refusal(const std::exception& e) {
  return dynamic_cast<const c10::AcceleratorError*>(&e) || dynamic_cast<const c10::OutOfMemoryError*>(&e);
}

at::Tensor gather(const at::Tensor& x, const Rows& r) { return r.identity ? x : x.index_select(0, r.index); }

at::Tensor fix_lse(const at::Tensor& aten_lse, at::Tensor& out, int64_t rows) {
  at::Tensor l = aten_lse;
  if (l.dim() == 3 && l.size(0) == 1) l = l.select(0, 0);
  if (l.dim() != 2 || l.size(0) != out.size(1) || l.size(1) < rows || l.scalar_type() != at::kFloat)
    throw Unsupported(detail::str_cat("cuda attention: unexpected logsumexp from ATen: ", l.sizes(), " ",
                                      l.scalar_type(), ", expected [H, >= ", rows, "] float32 (torch version?)"));
  at::Tensor lse = at::empty({out.size(1), rows}, l.options());
  if (!out.is_contiguous()) out = out.contiguous();  // the kernel zeroes rows of a packed [rows, H, D]
  kernels::LseFixParams p;
  p.lse_in = l.data_ptr<float>();
  p.in_head_stride = l.stride(0);
  p.in_row_stride = l.stride(1);
  p.lse_out = lse.data_ptr<float>();
  p.out = out.data_ptr();
  p.out_type = kernel_dtype(out.scalar_type());
  p.tokens = rows;
  p.heads = out.size(1);
  p.head_dim = out.size(2);
  kernels::launch_lse_fix(p, at::cuda::getCurrentCUDAStream());
  return lse;
}

void launch_merge(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b) {
  kernels::MergeParams p;
  p.out_acc = out_acc.data_ptr<float>();
  p.lse_acc = lse_acc.data_ptr<float>();
  p.out_b = out_b.data_ptr();
  p.out_b_type = kernel_dtype(out_b.scalar_type());
  p.lse_b = lse_b.data_ptr<float>();
  p.tokens = out_acc.size(0);
  p.heads = out_acc.size(1);
  p.head_dim = out_acc.size(2);
  kernels::launch_merge(p, at::cuda::getCurrentCUDAStream());
}

void merge_rows(at::Tensor& out_acc, at::Tensor& lse_acc, const at::Tensor& rows, bool identity,
                const at::Tensor& out_b, const at::Tensor& lse_b) {
  const at::Tensor ob = out_b.narrow(2, 0, out_acc.size(2)).contiguous(), lb = lse_b.contiguous();
  if (identity) {
    launch_merge(out_acc, lse_acc, ob, lb);
    return;
  }
  at::Tensor acc = out_acc.index_select(0, rows), lacc = lse_acc.index_select(1, rows);
  launch_merge(acc, lacc, ob, lb);
  out_acc.index_copy_(0, rows, acc);
  lse_acc.index_copy_(1, rows, lacc);
}

at::Tensor lse_for_aten(const at::Tensor& lse) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  at::Tensor l = lse.to(at::kFloat);
  return at::where(l == -kInf, at::full({}, kInf, l.options()), l);
}

void merge_group(const PieceGroup& g, const GroupOutput& r, at::Tensor& out_acc, at::Tensor& lse_acc) {
  int64_t r0 = 0;
  for (size_t l = 0; l + 1 < g.layer_begin.size(); ++l) {
    int64_t rows = 0;
    for (size_t i = g.layer_begin[l]; i < g.layer_begin[l + 1]; ++i) rows += g.pieces[i].m;
    const bool all_rows = r.qr.identity && rows == out_acc.size(0);
    merge_rows(out_acc, lse_acc, r.qr.index.narrow(0, r0, rows), all_rows, r.out.narrow(0, r0, rows),
               r.lse.narrow(1, r0, rows));
    r0 += rows;
  }
}

void add_group_grads(const Rows& qr, const Rows& kr, const at::Tensor& dq, const at::Tensor& dk,
                     const at::Tensor& dv, GradAcc& acc) {
  const int64_t d = acc.q_shape[2];
  auto grad = [d](const at::Tensor& x) { return x.narrow(2, 0, d).to(at::kFloat); };
  if (qr.identity && kr.identity && !acc.dq.defined()) {  // the whole block: the kernel's grads are the answer
    acc.dq = grad(dq), acc.dk = grad(dk), acc.dv = grad(dv);
    return;
  }
  acc.allocate_if_needed();
  acc.dq.index_add_(0, qr.index, grad(dq));
  acc.dk.index_add_(0, kr.index, grad(dk));
  acc.dv.index_add_(0, kr.index, grad(dv));
}

void merge_each_piece(const PieceGroup& g, int64_t tq, at::Tensor& out_acc, at::Tensor& lse_acc,
                      const std::function<AttentionOutput(const Piece&)>& piece_forward) {
  for (const Piece& p : g.pieces) {
    const AttentionOutput r = piece_forward(p);
    const at::Tensor rows = at::arange(p.q_row, p.q_row + p.m, out_acc.options().dtype(at::kLong));
    merge_rows(out_acc, lse_acc, rows, p.m == tq, r.out, r.lse);
  }
}

void add_piece_grads(const Piece& p, const AttentionGrads& grads, GradAcc& acc) {
  if (!acc.dq.defined() && p.m == acc.q_shape[0] && p.n == acc.kv_shape[0]) {  // the whole block
    acc.dq = grads.dq.contiguous(), acc.dk = grads.dk.contiguous(), acc.dv = grads.dv.contiguous();
    return;
  }
  acc.allocate_if_needed();
  acc.dq.narrow(0, p.q_row, p.m).add_(grads.dq);
  acc.dk.narrow(0, p.k_row, p.n).add_(grads.dk);
  acc.dv.narrow(0, p.k_row, p.n).add_(grads.dv);
}

void GradAcc::allocate_if_needed() {
  if (dq.defined()) return;
  dq = at::zeros(q_shape, options), dk = at::zeros(kv_shape, options), dv = at::zeros(kv_shape, options);
}

}  // namespace longhaul::cuda::routes

#include "attention/cuda/route_table.h"

namespace longhaul::cuda {
namespace {

constexpr int64_t kMaxFusedHeadDim = 256;

bool causal(const PieceGroup& g) { return g.left == -1 && g.right == 0; }

bool all_square(const PieceGroup& g) {
  for (const Piece& p : g.pieces)
    if (p.m != p.n) return false;
  return true;
}

Kernel half_kernel(const BlockPlan& plan, std::size_t gi, int64_t tq, int64_t tk, const RouteInputs& in) {
  const PieceGroup& g = plan.groups[gi];
  const Kernel windowed = in.cudnn_band ? Kernel::CudnnBand : Kernel::FlashVarlen;
  if (!full_or_causal(g)) return windowed;
  if (whole_block_piece(plan, tq, tk) && tq == tk && in.mha &&
      (causal(g) ? in.dense_cudnn_causal : in.dense_cudnn_full))
    return Kernel::CudnnDense;
  if (in.mha && in.dense_cudnn_pieces && dense_pieces_candidate(g)) return Kernel::CudnnPieces;
  if (in.cudnn_varlen && (!causal(g) || all_square(g))) return Kernel::CudnnVarlen;
  return windowed;  // causal pieces with more keys than rows: bottom-right, as the band route aligns
}

}  // namespace

const char* to_string(Kernel k) {
  switch (k) {
    case Kernel::CudnnDense: return "cudnn_dense";
    case Kernel::CudnnPieces: return "cudnn_pieces";
    case Kernel::CudnnVarlen: return "cudnn_varlen";
    case Kernel::CudnnBand: return "cudnn_band";
    case Kernel::FlashVarlen: return "flash_varlen";
    case Kernel::EfficientPieces: return "efficient";
    case Kernel::Fallback: return "fallback";
  }
  return "?";
}

Kernel backward_kernel(Kernel forward, bool cudnn_band) {
  if (forward != Kernel::CudnnVarlen) return forward;
  return cudnn_band ? Kernel::CudnnBand : Kernel::FlashVarlen;
}

bool full_or_causal(const PieceGroup& g) { return g.left == -1 && (g.right == -1 || g.right == 0); }

bool dense_pieces_candidate(const PieceGroup& g) {
  return full_or_causal(g) && g.pieces.size() <= kMaxDensePieces && (!causal(g) || all_square(g));
}

const Piece* whole_block_piece(const BlockPlan& plan, int64_t tq, int64_t tk) {
  if (plan.groups.size() != 1 || plan.groups[0].pieces.size() != 1) return nullptr;
  const Piece& p = plan.groups[0].pieces[0];
  return p.q_row == 0 && p.m == tq && p.k_row == 0 && p.n == tk ? &p : nullptr;
}

int64_t Route::kernel_calls() const {
  int64_t n = 0;
  for (const Launch& l : launches) n += l.launches;
  return n;
}

std::string Route::describe() const {
  std::string s;
  for (const Launch& l : launches) {
    if (!s.empty()) s += ", ";
    s += std::string(to_string(l.kernel)) + " x" + std::to_string(l.launches);
  }
  return s.empty() ? "nothing" : s;
}

Route Route::backward() const {
  Route r = *this;
  for (Launch& l : r.launches) l.kernel = backward_kernel(l.kernel, cudnn_band);
  return r;
}

Route route_block(const BlockPlan& plan, int64_t tq, int64_t tk, const RouteInputs& in) {
  Route r;
  r.cudnn_band = in.cudnn_band;
  const Route fallback{{{Kernel::Fallback, 0, 1}}};
  if (plan.fragmented || in.head_dim > kMaxFusedHeadDim || in.dtype == DTypeClass::Double)
    return fallback;
  if (in.dtype == DTypeClass::Half) {
    if (in.sm_major < 8) return fallback;
    for (std::size_t gi = 0; gi < plan.groups.size(); ++gi) {
      const Kernel k = half_kernel(plan, gi, tq, tk, in);
      r.launches.push_back({k, gi, k == Kernel::CudnnPieces ? static_cast<int64_t>(plan.groups[gi].pieces.size()) : 1});
    }
    return r;
  }
  // float32: the memory-efficient kernel takes no window on the right and no GQA (heads are
  // expanded), one call per piece.
  for (std::size_t gi = 0; gi < plan.groups.size(); ++gi) {
    const PieceGroup& g = plan.groups[gi];
    if (!(g.right == -1 && g.left == -1) && g.right != 0) return fallback;
    if (g.left != -1 && !in.efficient_window) return fallback;
    r.launches.push_back({Kernel::EfficientPieces, gi, static_cast<int64_t>(g.pieces.size())});
  }
  return r;
}

}  // namespace longhaul::cuda

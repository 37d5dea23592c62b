#include "attention/cuda/route_cudnn.h"

#include <ATen/SDPBackend.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>

#include "attention/cuda/cuda_attention.h"
#include "attention/cuda/route_common.h"
#include "attention/cuda/route_flash.h"
#include "core/errors.h"

namespace longhaul::cuda {
namespace {

using namespace routes;

// [T, H, D] as the [1, H, T, D] view the SDPA-style kernels take (no copy).
at::Tensor bhtd(const at::Tensor& x) { return x.unsqueeze(0).transpose(1, 2); }
at::Tensor from_bhtd(const at::Tensor& x) { return x.transpose(1, 2).squeeze(0); }

// Where the ragged operator puts heads ('h'), rows ('t') and unit dims ('1') in its logsumexp,
// read off the probe's output (rows 32, heads 2: never confused).
struct LseLayout {
  std::string dims;
  bool rows_first() const { return dims.find('t') < dims.find('h'); }
};

// [H, rows] from the operator's logsumexp (any strides).
at::Tensor lse_from_ragged(const at::Tensor& l, const LseLayout& lay) {
  at::Tensor x = l;
  for (int64_t i = static_cast<int64_t>(lay.dims.size()) - 1; i >= 0; --i)
    if (lay.dims[i] == '1') x = x.select(i, 0);
  return lay.rows_first() ? x.t() : x;
}
struct Probe : ProbeVerdict {
  LseLayout layout;
};

auto ragged_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Rows& qr, const Rows& kr,
                    bool causal, double scale) {
  return at::_cudnn_attention_forward(q, k, v, std::nullopt, qr.cu, kr.cu, qr.max_len, kr.max_len, true, 0.0, causal,
                                      false, scale);
}

LseLayout layout_of(const at::Tensor& l, int64_t rows, int64_t heads) {
  LseLayout lay;
  for (int64_t i = 0; i < l.dim(); ++i) {
    const int64_t n = l.size(i);
    if (n == rows) lay.dims += 't';
    else if (n == heads) lay.dims += 'h';
    else if (n == 1) lay.dims += '1';
    else throw Unsupported(detail::str_cat("ragged cuDNN logsumexp has shape ", l.sizes(), ", expected rows ", rows,
                                           " and heads ", heads));
  }
  if (std::count(lay.dims.begin(), lay.dims.end(), 't') != 1 || std::count(lay.dims.begin(), lay.dims.end(), 'h') != 1)
    throw Unsupported(detail::str_cat("ragged cuDNN logsumexp has shape ", l.sizes()));
  return lay;
}

// ragged cuDNN's forward and FlashAttention-2's, timed on what the route is for: 8192 tokens of
// causal documents of 256 to 2048 rows, 16 query heads (2 KV heads for GQA). "" when cuDNN is
// faster, else why not; both times go to stderr either way. torch does not route its own varlen
// attention to this operator, so how fast it is in this torch is not known in advance.
std::string ragged_slower_than_flash(const at::TensorOptions& opt, int64_t dp, int64_t hkv_probe) {
  const int64_t t = 8192, h = 16, hkv = hkv_probe == 1 ? 2 : 16;
  std::vector<Piece> docs;
  int64_t row = 0;
  for (const int64_t len : {2048, 512, 1024, 256, 1536, 768, 2048}) {
    docs.push_back({row, len, row, len, -1, 0, static_cast<int64_t>(docs.size())});
    row += len;
  }
  const Rows rows = piece_rows(docs, 0, docs.size(), true, t, opt.device());
  const at::Tensor q = probe_input(t, h, dp, 0.37, opt), k = probe_input(t, hkv, dp, 0.61, opt),
                   v = probe_input(t, hkv, dp, 0.23, opt);
  const double scale = 1.0 / std::sqrt(double(dp));
  const double cudnn_ms = best_of_three_ms([&] { ragged_forward(q, k, v, rows, rows, true, scale); });
  const double flash_ms = best_of_three_ms([&] {
    at::_flash_attention_forward(q, k, v, rows.cu, rows.cu, rows.max_len, rows.max_len, 0.0, true, false, scale);
  });
  return faster_than_flash_or_why(
      detail::str_cat("ragged cuDNN attention (", c10::toString(opt.dtype().toScalarType()), ")"),
      detail::str_cat("7 causal documents over ", t, " tokens, H ", h, "/", hkv, ", D ", dp, ", forward: cuDNN ",
                      cudnn_ms, " ms, FlashAttention-2 ", flash_ms, " ms"),
      cudnn_ms, flash_ms);
}

// Two causal square sequences (8 and 24 rows), then two full ones (8 rows x 24 keys, 24 x 8), 2
// query heads over `hkv` KV heads: ragged cuDNN's forward against FlashAttention-2's; then,
// unless LONGHAUL_CUDA_VARLEN=cudnn, both timed. Inputs are deterministic (no RNG state used).
// The backward is never run (the header says why), not even here: its overrun corrupts or kills
// the process.
Probe run_probe(const at::TensorOptions& opt, int64_t dp, int64_t hkv) {
  Probe pr;
  const VarlenMode mode = varlen_mode();
  if (mode == VarlenMode::Off) {
    pr.why = "LONGHAUL_CUDA_VARLEN=flash";
    return pr;
  }
  try {
    const int64_t total = 32, h = 2;
    const at::Tensor q = probe_input(total, h, dp, 0.37, opt), k = probe_input(total, hkv, dp, 0.61, opt),
                     v = probe_input(total, hkv, dp, 0.23, opt);
    const double scale = 1.0 / std::sqrt(double(dp));
    // The route's two forms: causal square pieces (documents) and full pieces with more or fewer
    // keys than rows (a zigzag step's joined halves), cuDNN's output and lse against flash's.
    auto compare = [&](const std::vector<Piece>& pieces, bool causal) {
      const Rows qr = piece_rows(pieces, 0, pieces.size(), true, total + 1, q.device()),
                 kr = piece_rows(pieces, 0, pieces.size(), false, total + 1, q.device());
      auto c = ragged_forward(q, k, v, qr, kr, causal, scale);
      auto f = at::_flash_attention_forward(q, k, v, qr.cu, kr.cu, qr.max_len, kr.max_len, 0.0, causal, false, scale);
      if (pr.layout.dims.empty()) pr.layout = layout_of(std::get<1>(c), total, h);
      const at::Tensor c_lse = lse_from_ragged(std::get<1>(c), pr.layout), f_lse = std::get<1>(f);
      const double e_out = relative_difference(std::get<0>(c), std::get<0>(f)),
                   e_lse = relative_difference(c_lse, f_lse);
      if (!probe_agrees(worst_difference({e_out, e_lse})))
        pr.why = detail::str_cat("ragged cuDNN disagrees with FlashAttention-2 on ", causal ? "causal" : "full",
                                 " pieces (relative differences out ", e_out, ", lse ", e_lse, ")");
      return pr.why.empty();
    };
    if (!compare({{0, 8, 0, 8, -1, 0, 0}, {8, 24, 8, 24, -1, 0, 1}}, true) ||
        !compare({{0, 8, 0, 24, -1, -1, 0}, {8, 24, 24, 8, -1, -1, 1}}, false))
      return pr;
    if (mode == VarlenMode::Timed) pr.why = ragged_slower_than_flash(opt, dp, hkv);
    pr.ok = pr.why.empty();
  } catch (const std::exception& e) {
    if (not_a_refusal(e)) throw;
    pr.why = detail::str_cat("ragged cuDNN attention does not run here: ", e.what());
    pr.why = pr.why.substr(0, pr.why.find('\n'));
  }
  return pr;
}

ProbeCache<Probe> g_probes("ragged cuDNN", run_probe, [](const Probe& p, const std::string& combination) {
  if (varlen_mode() != VarlenMode::Off)  // not turned off on purpose
    std::cerr << "longhaul: ragged cuDNN attention off (" << combination << "): " << p.why
              << "; FlashAttention-2 runs those blocks\n";
});

const Probe& probe_for(const at::Tensor& q, const at::Tensor& k) { return g_probes.verdict(q, k); }

}  // namespace

namespace {
constexpr std::pair<const char*, VarlenMode> kVarlenModes[] = {
    {"auto", VarlenMode::Timed}, {"cudnn", VarlenMode::On}, {"flash", VarlenMode::Off}};
}

VarlenMode parse_varlen_mode(const char* value) {
  return routes::parse_switch("LONGHAUL_CUDA_VARLEN", value, VarlenMode::Timed, kVarlenModes,
                              "auto (ragged cuDNN where it agrees with FlashAttention-2 and is faster; the default), "
                              "cudnn (where it agrees) or flash (FlashAttention-2 only)");
}

VarlenMode varlen_mode() { return parse_varlen_mode(std::getenv("LONGHAUL_CUDA_VARLEN")); }

const char* varlen_mode_name(VarlenMode mode) { return routes::switch_name(mode, kVarlenModes); }

bool cudnn_varlen_usable(const at::Tensor& q, const at::Tensor& k, std::string* why) {
  const Probe& p = probe_for(q, k);
  if (why) *why = p.why;
  return p.ok;
}

bool prefers_cudnn(const at::Tensor& q, const at::Tensor& k, bool causal, double scale) {
  // MHA, and square if causal (so top-left and bottom-right causal agree); then whatever ATen's
  // SDPA would choose for these inputs (cuDNN on Hopper when the build and the shapes allow it).
  if ((causal && q.size(0) != k.size(0)) || q.size(1) != k.size(1)) return false;
  try {
    return at::_fused_sdp_choice(bhtd(q), bhtd(k), bhtd(k), std::nullopt, 0.0, causal, scale, false) ==
           static_cast<int64_t>(at::SDPBackend::cudnn_attention);
  } catch (const c10::Error&) {
    return false;
  }
}

namespace routes {

AttentionOutput cudnn_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                              double scale) {
  auto res = at::_scaled_dot_product_cudnn_attention(bhtd(q), bhtd(k), bhtd(v), std::nullopt, true, 0.0, causal,
                                                     false, scale);
  at::Tensor out = from_bhtd(std::get<0>(res)).contiguous();  // a no-op: cuDNN writes q's layout
  at::Tensor l = std::get<1>(res);
  if (l.dim() == 4) l = l.squeeze(-1);  // [1, H, T, 1] -> [1, H, T]
  at::Tensor lse = fix_lse(l, out, q.size(0));  // may replace out by a contiguous copy
  return {out, lse};
}

AttentionGrads cudnn_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& out, const at::Tensor& lse, bool causal, double scale, int64_t d) {
  const at::Tensor none, philox = at::zeros({}, q.options().dtype(at::kLong));  // no dropout: never read
  const at::Tensor lse4 = lse.to(at::kFloat).contiguous().view({1, lse.size(0), lse.size(1), 1});
  auto g = at::_scaled_dot_product_cudnn_attention_backward(bhtd(dout), bhtd(q), bhtd(k), bhtd(v), bhtd(out), lse4,
                                                            philox, philox, none, none, none, q.size(0), k.size(0),
                                                            0.0, causal, scale);
  auto grad = [d](const at::Tensor& x) { return from_bhtd(x).narrow(2, 0, d).to(at::kFloat); };
  return {grad(std::get<0>(g)), grad(std::get<1>(g)), grad(std::get<2>(g))};
}

namespace {
// A piece shape dense cuDNN refuses (not expected: SDPA chose cuDNN for it) runs on
// FlashAttention-2 from then on, said once per shape: torch 2.11 leaves a refused shape's graph
// cache entry empty and would dereference it on the next call. A device fault or an out-of-memory
// error is rethrown (not_a_refusal).
template <typename Cudnn, typename Flash>
auto cudnn_or_flash(const PieceGroup& g, const Piece& p, const at::Tensor& q, Cudnn cudnn, Flash flash) {
  static std::mutex mu;
  static std::set<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int>> refused;
  const auto shape = std::make_tuple(p.m, p.n, g.right, q.size(1), q.size(2), static_cast<int>(q.scalar_type()));
  {
    const std::lock_guard<std::mutex> lock(mu);
    if (refused.count(shape)) return flash();
  }
  try {
    return cudnn();
  } catch (const std::exception& e) {
    if (not_a_refusal(e)) throw;
    const std::lock_guard<std::mutex> lock(mu);
    if (refused.insert(shape).second)
      std::cerr << "longhaul: dense cuDNN attention refused a piece (" << p.m << " x " << p.n
                << (g.right == 0 ? ", causal" : ", full") << "): " << std::string(e.what()).substr(0, 200)
                << "; FlashAttention-2 runs pieces of that shape\n";
  }
  return flash();
}
PieceGroup alone(const PieceGroup& g, const Piece& p) { return {g.left, g.right, {p}, {0, 1}}; }
}  // namespace

AttentionOutput cudnn_forward_piece(const PieceGroup& g, const Piece& p, const at::Tensor& q, const at::Tensor& k,
                                    const at::Tensor& v, double scale) {
  return cudnn_or_flash(
      g, p, q,
      [&] {
        return cudnn_forward(q.narrow(0, p.q_row, p.m), k.narrow(0, p.k_row, p.n), v.narrow(0, p.k_row, p.n),
                             g.right == 0, scale);
      },
      [&] {
        GroupOutput o = flash_forward_pieces(alone(g, p), q, k, v, scale);
        return AttentionOutput{o.out, o.lse};
      });
}

void cudnn_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                          const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                          GradAcc& acc) {
  for (const Piece& p : g.pieces) {
    auto rows = [&p](const at::Tensor& x) { return x.narrow(0, p.q_row, p.m); };
    auto keys = [&p](const at::Tensor& x) { return x.narrow(0, p.k_row, p.n); };
    cudnn_or_flash(
        g, p, q,
        [&] {
          add_piece_grads(p,
                          cudnn_backward(rows(dout), rows(q), keys(k), keys(v), rows(out),
                                         lse.narrow(1, p.q_row, p.m), g.right == 0, scale, acc.q_shape[2]),
                          acc);
          return 0;
        },
        [&] {
          flash_backward_group(alone(g, p), dout, q, k, v, out, lse_for_aten(lse), scale, acc);
          return 0;
        });
  }
}

GroupOutput cudnn_varlen_forward_pieces(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, double scale) {
  const Probe& pr = probe_for(q, k);
  LH_CHECK(pr.ok, "cudnn_varlen_forward_pieces called where the route is off: ", pr.why);
  Rows qr = piece_rows(g.pieces, 0, g.pieces.size(), true, q.size(0), q.device());
  const Rows kr = piece_rows(g.pieces, 0, g.pieces.size(), false, k.size(0), q.device());
  // ATen turns the row offsets into element offsets (rows x H x D) in int32: a group past that
  // runs on FlashAttention-2, which counts rows.
  if (!ragged_offsets_fit(qr, q, kr, k)) return flash_forward_pieces(g, q, k, v, scale);
  // Ragged offsets are counted in whole rows of H x D: packed inputs.
  // A shape the probe's does not stand for may be refused (e.g. pieces of one row each):
  // FlashAttention-2 runs it, and every later group of that shape, said once per shape.
  static std::mutex refused_mu;
  static std::set<std::tuple<int64_t, int64_t, int64_t>> refused;
  const std::tuple<int64_t, int64_t, int64_t> shape{static_cast<int64_t>(g.pieces.size()), qr.max_len, kr.max_len};
  {
    const std::lock_guard<std::mutex> lock(refused_mu);
    if (refused.count(shape)) return flash_forward_pieces(g, q, k, v, scale);
  }
  decltype(ragged_forward(q, k, v, qr, kr, true, scale)) res;
  try {
    res = ragged_forward(gather(q, qr).contiguous(), gather(k, kr).contiguous(), gather(v, kr).contiguous(), qr, kr,
                         g.right == 0, scale);
  } catch (const std::exception& e) {
    if (not_a_refusal(e)) throw;
    const std::lock_guard<std::mutex> lock(refused_mu);
    if (refused.insert(shape).second)
      std::cerr << "longhaul: ragged cuDNN attention refused a group (" << g.pieces.size() << " pieces, longest "
                << qr.max_len << " x " << kr.max_len << "): " << std::string(e.what()).substr(0, 200)
                << "; FlashAttention-2 runs such groups\n";
    return flash_forward_pieces(g, q, k, v, scale);
  }
  at::Tensor out = std::get<0>(res);
  LH_CHECK(out.dim() == 3 && out.size(0) == qr.total && out.size(1) == q.size(1),
           "ragged cuDNN output has shape ", out.sizes(), ", expected [", qr.total, ", ", q.size(1), ", D]");
  at::Tensor lse = fix_lse(lse_from_ragged(std::get<1>(res), pr.layout), out, qr.total);
  return {out, lse, std::move(qr)};
}

}  // namespace routes
}  // namespace longhaul::cuda

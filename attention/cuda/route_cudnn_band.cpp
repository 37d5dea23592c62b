#include "attention/cuda/route_cudnn_band.h"

#include <longhaul/config.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "core/errors.h"
#include "core/host_to_device.h"

#if LONGHAUL_WITH_CUDNN_FRONTEND
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cudnn/Handle.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

// The frontend calls cuDNN through function pointers it looks up in the libcudnn.so.9 torch has
// already loaded (no second cuDNN, no link-time dependency), and needs no JSON library.
#define NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING
#define CUDNN_FRONTEND_SKIP_JSON_LIB
// cudnn-frontend is newer than the copy built into torch: its code stays inside this library
// (hidden), so neither copy can stand in for the other at load time.
#pragma GCC visibility push(hidden)
#include <cudnn_frontend.h>
#pragma GCC visibility pop

#include "attention/cuda/route_flash.h"

namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;  // the frontend's handle on libcudnn (dynamic loading)
}
#endif

namespace longhaul::cuda {

namespace {
constexpr std::pair<const char*, BandMode> kBandModes[] = {
    {"flash", BandMode::Off}, {"cudnn", BandMode::On}, {"auto", BandMode::Auto}};
}

BandMode parse_band_mode(const char* value) {
  return routes::parse_switch("LONGHAUL_CUDA_BAND", value, BandMode::Off, kBandModes,
                              "cudnn (the cuDNN band route, checked against FlashAttention-2), auto (checked and "
                              "timed against it: the faster runs) or flash (FlashAttention-2 only)");
}

BandMode band_mode() { return parse_band_mode(std::getenv("LONGHAUL_CUDA_BAND")); }

const char* band_mode_name(BandMode mode) { return routes::switch_name(mode, kBandModes); }

#if LONGHAUL_WITH_CUDNN_FRONTEND
namespace {

namespace fe = cudnn_frontend;
using namespace routes;

// The frontend dlopens a CUDA runtime by name and would take libcudart.so.12 first if one were on
// the path: name the one this process runs. Done while this library loads, before any thread of
// ours runs, since setenv beside another thread's getenv is undefined behaviour.
const bool g_cudart_named = [] {
  Dl_info info{};
  if (!std::getenv("CUDNN_FRONTEND_CUDART_LIB_NAME") &&
      dladdr(reinterpret_cast<void*>(&cudaRuntimeGetVersion), &info) && info.dli_fname)
    setenv("CUDNN_FRONTEND_CUDART_LIB_NAME", info.dli_fname, 0);
  return true;
}();

// Opens the cuDNN torch already holds, once per process.
std::string open_cudnn() {
  static const std::string why = [] {
    void* h = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_NOLOAD);  // loaded with libtorch_cuda
    if (!h) h = dlopen("libcudnn.so.9", RTLD_NOW);
    if (!h) return std::string("libcudnn.so.9 cannot be opened: ") + dlerror();
    fe::cudnn_dlhandle = h;
    return std::string();
  }();
  return why;
}

// torch's cuDNN handle of this thread and device, bound to the current stream (the kernels run
// in stream order with the ATen work around them).
cudnnHandle_t handle_on_current_stream() {
  if (std::string e = open_cudnn(); !e.empty()) throw Unsupported("cuDNN band attention: " + e);
  cudnnHandle_t h = at::native::getCudnnHandle();
  if (fe::detail::set_stream(h, at::cuda::getCurrentCUDAStream().stream()) != CUDNN_STATUS_SUCCESS)
    throw Unsupported("cuDNN band attention: cudnnSetStream failed");
  return h;
}

fe::DataType_t fe_dtype(at::ScalarType t) {
  return t == at::kBFloat16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF;
}

// Tensor uids of the graphs.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV, kSeqQ, kSeqKV, kOffQ, kOffKV, kOffO };

// What one graph is built for (the scale is a constant of the graph); the ragged offsets and
// lengths are run-time tensors.
struct GraphKey {
  int device;
  int dtype;
  int64_t b, h, hkv, d, max_q, max_kv, left, right;
  double scale;
  bool backward;
  int64_t total_q = 0, total_kv = 0;  // backward: bounds on the packed rows (sizes its dQ accumulator)
  auto tie() const {
    return std::tie(device, dtype, b, h, hkv, d, max_q, max_kv, left, right, scale, backward, total_q, total_kv);
  }
  bool operator<(const GraphKey& o) const { return tie() < o.tie(); }
};

void check(fe::error_t e, const char* what) {
  if (!e.is_good()) throw Unsupported(detail::str_cat("cuDNN band attention: ", what, ": ", e.get_message()));
}

// A [b, heads, max_len, d] view of packed rows [total, heads, d] with per-piece ragged offsets.
// cuDNN reads the pieces at their offsets, not at the batch stride, but checks that stride's
// alignment once the graph is lowered: the packed form's max_len x heads x d passes.
std::vector<int64_t> packed_strides(int64_t heads, int64_t max_len, int64_t d) {
  return {max_len * heads * d, d, heads * d, 1};
}
std::shared_ptr<fe::graph::Tensor_attributes> ragged(fe::graph::Graph& g, Uid uid, const char* name, int64_t b,
                                                     int64_t heads, int64_t max_len, int64_t d,
                                                     const std::shared_ptr<fe::graph::Tensor_attributes>& offsets) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_uid(uid)
                      .set_name(name)
                      .set_dim({b, heads, max_len, d})
                      .set_stride(packed_strides(heads, max_len, d))
                      .set_ragged_offset(offsets));
}
std::shared_ptr<fe::graph::Tensor_attributes> per_piece(fe::graph::Graph& g, Uid uid, const char* name, int64_t n) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_uid(uid)
                      .set_name(name)
                      .set_dim({n, 1, 1, 1})
                      .set_stride({1, 1, 1, 1})
                      .set_data_type(fe::DataType_t::INT32));
}

// The diagonal and band of a group, in cuDNN's terms: a key b of a piece with m rows and n keys is
// visible from row a iff a + (n − m) − left <= b <= a + (n − m) + right (FlashAttention-2's
// bottom-right offsets; −1 = unbounded). cuDNN keeps b > a' − left_bound and b <= a' + right_bound
// with a' the bottom-right-shifted row, so left_bound = left + 1.
template <typename Attributes>
void set_band(Attributes& a, int64_t left, int64_t right) {
  if (left < 0 && right < 0) return;  // no band (documents): an alignment would only narrow what cuDNN accepts
  a.set_diagonal_alignment(fe::DiagonalAlignment_t::BOTTOM_RIGHT);
  if (left >= 0) a.set_diagonal_band_left_bound(static_cast<int>(left + 1));
  if (right >= 0) a.set_diagonal_band_right_bound(static_cast<int>(right));
}

// The graph of one group shape, described (not yet built); sm_version > 0 names a target GPU
// instead of the current device (validation without a device).
std::shared_ptr<fe::graph::Graph> describe(const GraphKey& k, at::ScalarType dtype, int sm_version = 0) {
  auto g = std::make_shared<fe::graph::Graph>();
  if (sm_version > 0) g->set_sm_version(sm_version);
  g->set_io_data_type(fe_dtype(dtype))
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto off_q = per_piece(*g, kOffQ, "off_q", k.b + 1), off_kv = per_piece(*g, kOffKV, "off_kv", k.b + 1);
  auto seq_q = per_piece(*g, kSeqQ, "seq_q", k.b), seq_kv = per_piece(*g, kSeqKV, "seq_kv", k.b);
  auto Q = ragged(*g, kQ, "Q", k.b, k.h, k.max_q, k.d, off_q);
  auto K = ragged(*g, kK, "K", k.b, k.hkv, k.max_kv, k.d, off_kv);
  auto V = ragged(*g, kV, "V", k.b, k.hkv, k.max_kv, k.d, off_kv);
  // Stats padded per piece, [b, h, max_q, 1]: one layout every cuDNN version reads the same way.
  auto stats_layout = [&](fe::graph::Tensor_attributes& t) -> fe::graph::Tensor_attributes& {
    return t.set_uid(kStats)
        .set_dim({k.b, k.h, k.max_q, 1})
        .set_stride({k.h * k.max_q, k.max_q, 1, 1})
        .set_data_type(fe::DataType_t::FLOAT);
  };
  if (!k.backward) {
    auto opts = fe::graph::SDPA_attributes()
                    .set_name("longhaul_band")
                    .set_generate_stats(true)
                    .set_attn_scale(static_cast<float>(k.scale))
                    .set_padding_mask(true)
                    .set_seq_len_q(seq_q)
                    .set_seq_len_kv(seq_kv);
    set_band(opts, k.left, k.right);
    auto [O, Stats] = g->sdpa(Q, K, V, opts);
    O->set_output(true).set_uid(kO).set_dim({k.b, k.h, k.max_q, k.d}).set_stride(packed_strides(k.h, k.max_q, k.d));
    O->set_ragged_offset(off_q);
    stats_layout(Stats->set_output(true));
  } else {
    auto off_o = per_piece(*g, kOffO, "off_o", k.b + 1);
    auto O = ragged(*g, kO, "O", k.b, k.h, k.max_q, k.d, off_o);
    auto dO = ragged(*g, kDO, "dO", k.b, k.h, k.max_q, k.d, off_o);
    fe::graph::Tensor_attributes stats_in;
    auto Stats = g->tensor(stats_layout(stats_in.set_name("Stats")));
    // Without the packed totals cuDNN sizes (and zeroes) its float32 dQ accumulator for
    // b x h x max_q x d, the padded batch, which for many pieces is many times the rows.
    auto opts = fe::graph::SDPA_backward_attributes()
                    .set_name("longhaul_band_backward")
                    .set_attn_scale(static_cast<float>(k.scale))
                    .set_padding_mask(true)
                    .set_seq_len_q(seq_q)
                    .set_seq_len_kv(seq_kv)
                    .set_max_total_seq_len_q(k.total_q)
                    .set_max_total_seq_len_kv(k.total_kv);
    set_band(opts, k.left, k.right);
    auto [dQ, dK, dV] = g->sdpa_backward(Q, K, V, O, dO, Stats, opts);
    dQ->set_output(true).set_uid(kDQ).set_dim({k.b, k.h, k.max_q, k.d}).set_stride(packed_strides(k.h, k.max_q, k.d));
    dK->set_output(true).set_uid(kDK).set_dim({k.b, k.hkv, k.max_kv, k.d}).set_stride(
        packed_strides(k.hkv, k.max_kv, k.d));
    dV->set_output(true).set_uid(kDV).set_dim({k.b, k.hkv, k.max_kv, k.d}).set_stride(
        packed_strides(k.hkv, k.max_kv, k.d));
    dQ->set_ragged_offset(off_q);
    dK->set_ragged_offset(off_kv);
    dV->set_ragged_offset(off_kv);
  }
  return g;
}

std::shared_ptr<fe::graph::Graph> build(const GraphKey& k, at::ScalarType dtype, cudnnHandle_t handle) {
  auto g = describe(k, dtype);
  check(g->validate(), "validate");
  check(g->build_operation_graph(handle), "build_operation_graph");
  check(g->create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans");
  check(g->check_support(handle), "check_support");
  check(g->build_plans(handle), "build_plans");
  return g;
}

// Graphs are built per thread, as ATen does: cuDNN does not promise a plan is safe to run from two
// threads at once (the emulated ranks of one GPU are threads). A shape cuDNN will not build or run
// is held as null, so it is not tried again: FlashAttention-2 runs its groups.
thread_local std::map<GraphKey, std::shared_ptr<fe::graph::Graph>> t_graphs;

std::atomic<int64_t> g_ran{0}, g_handed_back{0};

// One line per shape and process on stderr when cuDNN refuses a shape the probe did not cover.
void report_refused(const GraphKey& k, const std::string& why) {
  static std::mutex mu;
  static std::set<GraphKey> seen;
  const std::lock_guard<std::mutex> lock(mu);
  if (!seen.insert(k).second) return;
  std::cerr << "longhaul: cuDNN band attention refuses " << (k.backward ? "backward" : "forward") << " graph ("
            << k.b << " pieces up to " << k.max_q << " x " << k.max_kv << ", H " << k.h << "/" << k.hkv << ", D "
            << k.d << ", band " << k.left << "/" << k.right << "): " << why.substr(0, why.find('\n'))
            << "; FlashAttention-2 runs these groups\n";
}

// The built graph of a shape, or null when cuDNN refuses it (reported once).
const fe::graph::Graph* graph_for(const GraphKey& key, at::ScalarType dtype, cudnnHandle_t handle) {
  auto it = t_graphs.find(key);
  if (it == t_graphs.end()) {
    std::shared_ptr<fe::graph::Graph> g;
    try {
      g = build(key, dtype, handle);
    } catch (const std::exception& e) {  // refused (Unsupported), or the frontend's own runtime_error
      if (not_a_refusal(e)) throw;
      report_refused(key, e.what());
    }
    it = t_graphs.emplace(key, std::move(g)).first;
  }
  return it->second.get();
}

// Runs a built graph; false (and the shape dropped) when cuDNN refuses to run it or its workspace
// cannot be allocated. Its outputs are fresh tensors the caller discards then, so nothing is
// half-written.
bool execute(const GraphKey& key, const fe::graph::Graph& g, std::unordered_map<int64_t, void*>& pack,
             cudnnHandle_t handle) {
  try {
    int64_t ws = 0;
    check(g.get_workspace_size(ws), "get_workspace_size");
    auto workspace = c10::cuda::CUDACachingAllocator::get()->allocate(static_cast<size_t>(ws));
    check(g.execute(handle, pack, workspace.get()), "execute");
    return true;
  } catch (const std::exception& e) {
    if (not_a_refusal(e)) throw;  // out of memory for the workspace: try again next time
    report_refused(key, e.what());
    t_graphs[key] = nullptr;
    return false;
  }
}

// Graph shapes are rounded up (pieces and longest piece to powers of two, the extra pieces empty)
// so that blocks whose documents or windows differ a little share a graph: building one costs far
// more than running it.
// The most padded stats rows a call may hold per packed query row (bucket(pieces) x bucket(longest)
// over the rows).
constexpr int64_t kMaxStatsPadding = 32;

int64_t bucket(int64_t n) {
  int64_t b = 1;
  while (b < n) b <<= 1;
  return b;
}

// One call of the route on a group: the packed rows, the graph's (bucketed) shape and the
// per-piece lengths and ragged element offsets (int32, on the device) cuDNN reads. `fits` is false
// when an offset would pass int32 (FlashAttention-2, which counts rows, runs the group then).
struct BandCall {
  Rows qr, kr;
  int64_t b, b_graph, max_q, max_kv;
  at::Tensor seq_q, seq_kv, off_q, off_kv;  // [b_graph], [b_graph + 1]
  GraphKey key;
  bool fits = false;

  BandCall(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, double scale, bool backward)
      : qr(piece_rows(g.pieces, 0, g.pieces.size(), true, q.size(0), q.device())),
        kr(piece_rows(g.pieces, 0, g.pieces.size(), false, k.size(0), q.device())),
        b(static_cast<int64_t>(g.pieces.size())), b_graph(bucket(b)), max_q(bucket(qr.max_len)),
        max_kv(bucket(kr.max_len)) {
    const int64_t h = q.size(1), hkv = k.size(1), d = q.size(2);
    key = {static_cast<int>(q.get_device()), static_cast<int>(q.scalar_type()), b_graph, h, hkv, d, max_q, max_kv,
           g.left, g.right, scale, backward};
    if (backward) key.total_q = bucket(qr.total), key.total_kv = bucket(kr.total);
    fits = ragged_offsets_fit(qr, q, kr, k);
    if (!fits) {
      report_refused(key, detail::str_cat("ragged offsets of ", qr.total, " x ", h * d, " and ", kr.total, " x ",
                                          hkv * d, " elements pass int32"));
      return;
    }
    // Without a head dim that is a multiple of 16, cudnn-frontend drops the packed totals and sizes
    // its float32 dQ accumulator for the padded batch (pieces x longest, up to kMaxStatsPadding
    // times the rows).
    if (backward && d % 16 != 0) {
      fits = false;
      report_refused(key, detail::str_cat("head dim ", d, " is not a multiple of 16 (the backward's workspace would "
                                          "be sized for the padded batch)"));
      return;
    }
    // The stats are padded per piece: one long document among many short ones would make them
    // (pieces x longest) rows, gigabytes at 128K tokens and 64 heads.
    if (b_graph * max_q > kMaxStatsPadding * std::max<int64_t>(qr.total, 1024)) {
      fits = false;
      report_refused(key, detail::str_cat("its stats padded per piece would be ", b_graph, " x ", max_q,
                                          " rows for ", qr.total, " rows of queries (more than ", kMaxStatsPadding,
                                          " times)"));
      return;
    }
    std::tie(seq_q, off_q) = side(qr, h * d);
    std::tie(seq_kv, off_kv) = side(kr, hkv * d);
  }

  // Flat [b_graph · max_q] positions of the packed q rows in the padded [b, h, max_q] stats.
  at::Tensor stats_rows(const PieceGroup& g, const at::Device& dev) const {
    std::vector<int64_t> idx;
    idx.reserve(static_cast<size_t>(qr.total));
    for (size_t p = 0; p < g.pieces.size(); ++p)
      for (int64_t i = 0; i < g.pieces[p].m; ++i) idx.push_back(static_cast<int64_t>(p) * max_q + i);
    return host_to_device(at::tensor(idx, at::kLong), dev);
  }

 private:
  std::pair<at::Tensor, at::Tensor> side(const Rows& r, int64_t row_elems) const {
    const int64_t n = r.cu.numel() - 1;
    at::Tensor lens = r.cu.narrow(0, 1, n) - r.cu.narrow(0, 0, n);
    at::Tensor offs = r.cu * static_cast<int32_t>(row_elems);
    if (b_graph > b) {  // empty pieces at the end
      lens = at::cat({lens, at::zeros({b_graph - b}, lens.options())});
      offs = at::cat({offs, offs.narrow(0, n, 1).expand({b_graph - b})});
    }
    return {lens.contiguous(), offs.contiguous()};
  }
};

// The route's calls; nullopt / false when cuDNN refuses the group's shape (the caller decides
// what runs instead: FlashAttention-2 in the route, a failed verdict in the probe).
std::optional<GroupOutput> try_forward(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, double scale) {
  BandCall c(g, q, k, scale, false);
  if (!c.fits) return std::nullopt;
  const int64_t h = q.size(1), d = q.size(2);
  cudnnHandle_t handle = handle_on_current_stream();
  const fe::graph::Graph* graph = graph_for(c.key, q.scalar_type(), handle);
  if (!graph) return std::nullopt;
  const at::Tensor qg = gather(q, c.qr).contiguous(), kg = gather(k, c.kr).contiguous(),
                   vg = gather(v, c.kr).contiguous();
  at::Tensor out = at::empty({c.qr.total, h, d}, q.options());
  at::Tensor stats = at::empty({c.b_graph, h, c.max_q, 1}, q.options().dtype(at::kFloat));
  std::unordered_map<int64_t, void*> pack{
      {kQ, qg.data_ptr()},          {kK, kg.data_ptr()},          {kV, vg.data_ptr()},
      {kO, out.data_ptr()},         {kStats, stats.data_ptr()},   {kSeqQ, c.seq_q.data_ptr()},
      {kSeqKV, c.seq_kv.data_ptr()}, {kOffQ, c.off_q.data_ptr()},  {kOffKV, c.off_kv.data_ptr()}};
  if (!execute(c.key, *graph, pack, handle)) return std::nullopt;
  const at::Tensor lse_rows = stats.view({c.b_graph, h, c.max_q})
                                  .transpose(0, 1)
                                  .reshape({h, c.b_graph * c.max_q})
                                  .index_select(1, c.stats_rows(g, q.device()));
  at::Tensor lse = fix_lse(lse_rows, out, c.qr.total);
  return GroupOutput{out, lse, std::move(c.qr)};
}

bool try_backward(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale, GradAcc& acc) {
  BandCall c(g, q, k, scale, true);
  if (!c.fits) return false;
  const int64_t h = q.size(1);
  cudnnHandle_t handle = handle_on_current_stream();
  const fe::graph::Graph* graph = graph_for(c.key, q.scalar_type(), handle);
  if (!graph) return false;
  const at::Tensor qg = gather(q, c.qr).contiguous(), kg = gather(k, c.kr).contiguous(),
                   vg = gather(v, c.kr).contiguous();
  const at::Tensor og = gather(out, c.qr).contiguous(), dog = gather(dout, c.qr).contiguous();
  // The rows' lse into the padded stats layout (padding rows are masked, never read).
  const at::Tensor lse_g = (c.qr.identity ? lse : lse.index_select(1, c.qr.index)).to(at::kFloat);
  at::Tensor stats = at::zeros({h, c.b_graph * c.max_q}, q.options().dtype(at::kFloat));
  stats.index_copy_(1, c.stats_rows(g, q.device()), lse_g);
  stats = stats.view({h, c.b_graph, c.max_q}).transpose(0, 1).contiguous();  // [b, h, max_q] (+ a unit dim)
  // Zeroed: a key row no query of its piece sees may be skipped by the kernel, not written.
  at::Tensor dq = at::zeros_like(qg), dk = at::zeros_like(kg), dv = at::zeros_like(vg);
  std::unordered_map<int64_t, void*> pack{
      {kQ, qg.data_ptr()},            {kK, kg.data_ptr()},          {kV, vg.data_ptr()},
      {kO, og.data_ptr()},            {kDO, dog.data_ptr()},        {kStats, stats.data_ptr()},
      {kDQ, dq.data_ptr()},           {kDK, dk.data_ptr()},         {kDV, dv.data_ptr()},
      {kSeqQ, c.seq_q.data_ptr()},    {kSeqKV, c.seq_kv.data_ptr()}, {kOffQ, c.off_q.data_ptr()},
      {kOffKV, c.off_kv.data_ptr()},  {kOffO, c.off_q.data_ptr()}};
  if (!execute(c.key, *graph, pack, handle)) return false;
  add_group_grads(c.qr, c.kr, dq, dk, dv, acc);
  return true;
}

// cuDNN against FlashAttention-2 on one group: the largest relative difference of out, lse and
// the three gradients (both backward calls take FlashAttention-2's out and lse, standing for the
// block's). Throws when cuDNN refuses the group's shape.
double difference_from_flash(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& dout, double scale) {
  const int64_t tq = q.size(0), h = q.size(1), dp = q.size(2);
  std::optional<GroupOutput> c = try_forward(g, q, k, v, scale);
  if (!c) throw Unsupported("the forward graph was refused");
  GroupOutput f = flash_forward_pieces(g, q, k, v, scale);
  const double e_out = relative_difference(c->out, f.out), e_lse = relative_difference(c->lse, f.lse);
  at::Tensor out_full = at::zeros_like(q), lse_full = at::zeros({h, tq}, q.options().dtype(at::kFloat));
  out_full.index_copy_(0, f.qr.index, f.out.narrow(2, 0, dp));
  lse_full.index_copy_(1, f.qr.index, f.lse);
  const at::Tensor lse_aten = lse_for_aten(lse_full);
  GradAcc gc{{}, {}, {}, {tq, h, dp}, {k.size(0), k.size(1), dp}, q.options().dtype(at::kFloat)}, gf = gc;
  if (!try_backward(g, dout, q, k, v, out_full, lse_aten, scale, gc))
    throw Unsupported("the backward graph was refused");
  flash_backward_group(g, dout, q, k, v, out_full, lse_aten, scale, gf);
  gc.allocate_if_needed();
  gf.allocate_if_needed();
  return worst_difference({e_out, e_lse, relative_difference(gc.dq, gf.dq), relative_difference(gc.dk, gf.dk),
                           relative_difference(gc.dv, gf.dv)});
}

// LONGHAUL_CUDA_BAND=auto: cuDNN and FlashAttention-2 on the case the route is for, a causal
// window of 1024 over 8192 tokens (16 query heads; 2 KV heads for GQA), compared (a size well
// beyond the small probe's) and then timed, forward + backward. "" when cuDNN agrees and is
// faster, else why not; when both ran, one line on stderr gives both times.
std::string slower_than_flash(const at::TensorOptions& opt, int64_t dp, int64_t hkv_probe) {
  const int64_t t = 8192, h = 16, hkv = hkv_probe == 1 ? 2 : 16, window = 1023;
  const at::Tensor q = probe_input(t, h, dp, 0.37, opt), k = probe_input(t, hkv, dp, 0.61, opt),
                   v = probe_input(t, hkv, dp, 0.23, opt), dout = probe_input(t, h, dp, 0.11, opt);
  const double scale = 1.0 / std::sqrt(double(dp));
  const PieceGroup g{window, 0, {{0, t, 0, t, window, 0, 0}}, {0, 1}};
  const std::string what = detail::str_cat("causal window of ", window + 1, " over ", t, " tokens");
  if (const double d = difference_from_flash(g, q, k, v, dout, scale); !probe_agrees(d))
    return detail::str_cat("cuDNN band attention disagrees with FlashAttention-2 on a ", what,
                           " (relative difference ", d, ")");
  GradAcc acc{{}, {}, {}, {t, h, dp}, {t, hkv, dp}, opt.dtype(at::kFloat)};
  const double cudnn_ms = best_of_three_ms([&] {
    std::optional<GroupOutput> o = try_forward(g, q, k, v, scale);
    if (!o || !try_backward(g, dout, q, k, v, o->out, lse_for_aten(o->lse), scale, acc))
      throw Unsupported("the graph of a " + what + " was refused");
  });
  const double flash_ms = best_of_three_ms([&] {
    GroupOutput o = flash_forward_pieces(g, q, k, v, scale);
    flash_backward_group(g, dout, q, k, v, o.out, lse_for_aten(o.lse), scale, acc);
  });
  return faster_than_flash_or_why(
      detail::str_cat("cuDNN band attention (LONGHAUL_CUDA_BAND=auto, ", c10::toString(opt.dtype().toScalarType()), ")"),
      detail::str_cat(what, ", H ", h, "/", hkv, ", D ", dp, ", forward + backward: cuDNN ", cudnn_ms,
                      " ms, FlashAttention-2 ", flash_ms, " ms"),
      cudnn_ms, flash_ms);
}

// Groups of three pieces (24 rows x 40 keys, 10 x 10, 6 x 6; the graph pads a fourth, empty
// piece) under a causal window (left 7), a two-sided band (left 7, right 2), plain causal and no
// bound at all (documents, whose backward the route runs for ragged cuDNN), and a causal piece
// with more keys than rows: cuDNN against FlashAttention-2, out, lse and the three gradients. The
// two-sided band and the unbounded form may be refused (such a shape then runs on
// FlashAttention-2, as any refused shape does); the causal forms are what the route is for, so
// their refusal turns it off. A form that runs and disagrees turns it off too.
ProbeVerdict run_probe(const at::TensorOptions& opt, int64_t dp, int64_t hkv) {
  ProbeVerdict pr;  // only asked for when LONGHAUL_CUDA_BAND asks for the route (cudnn_band_usable)
  std::set<GraphKey> before;  // this thread's graphs from earlier calls (another combination's)
  for (const auto& kv : t_graphs) before.insert(kv.first);
  if (std::string e = open_cudnn(); !e.empty()) {
    pr.why = e;
    return pr;
  }
  try {
    const int64_t h = 2, tq = 40, tk = 56;
    const at::Tensor q = probe_input(tq, h, dp, 0.37, opt), k = probe_input(tk, hkv, dp, 0.61, opt),
                     v = probe_input(tk, hkv, dp, 0.23, opt), dout = probe_input(tq, h, dp, 0.11, opt);
    const double scale = 1.0 / std::sqrt(double(dp));
    auto three_pieces = [](int64_t left, int64_t right) {
      return PieceGroup{left,
                        right,
                        {{0, 24, 0, 40, left, right, 0}, {24, 10, 40, 10, left, right, 1},
                         {34, 6, 50, 6, left, right, 2}},
                        {0, 3}};
    };
    struct Case {
      PieceGroup group;
      bool may_refuse;
    };
    const std::vector<Case> cases{{three_pieces(7, 0), false},
                                  {three_pieces(7, 2), true},
                                  {{-1, 0, {{0, 24, 0, 40, -1, 0, 0}}, {0, 1}}, false},
                                  {three_pieces(-1, 0), false},  // causal documents (their backward)
                                  {three_pieces(-1, -1), true}};  // full documents
    double worst = 0;
    for (const Case& c : cases) {
      try {
        worst = worst_difference({worst, difference_from_flash(c.group, q, k, v, dout, scale)});
      } catch (const Unsupported&) {
        if (!c.may_refuse) throw;  // reported on stderr by graph_for / execute
      }
    }
    if (!probe_agrees(worst)) {
      pr.why = detail::str_cat("cuDNN band attention disagrees with FlashAttention-2 (worst relative difference ",
                               worst, ")");
      return pr;
    }
    if (band_mode() == BandMode::Auto) pr.why = slower_than_flash(opt, dp, hkv);
    pr.ok = pr.why.empty();
  } catch (const std::exception& e) {
    if (not_a_refusal(e)) throw;
    pr.why = detail::str_cat("cuDNN band attention does not run here: ", e.what());
    pr.why = pr.why.substr(0, pr.why.find('\n'));
  }
  for (auto it = t_graphs.begin(); it != t_graphs.end();)  // the probe's own graphs are not worth keeping
    it = before.count(it->first) ? std::next(it) : t_graphs.erase(it);
  return pr;
}

ProbeCache<ProbeVerdict> g_probes("cuDNN band", run_probe, [](const ProbeVerdict& p, const std::string& combination) {
  std::cerr << "longhaul: cuDNN band attention off (" << combination << "): " << p.why
            << "; FlashAttention-2 runs those groups\n";
});

}  // namespace

BandRouteCounts cudnn_band_counts() { return {g_ran.load(), g_handed_back.load()}; }

bool cudnn_band_usable(const at::Tensor& q, const at::Tensor& k, std::string* why) {
  if (band_mode() == BandMode::Off) {
    if (why) *why = "LONGHAUL_CUDA_BAND is neither cudnn nor auto";
    return false;
  }
  const ProbeVerdict& p = g_probes.verdict(q, k);
  if (why) *why = p.why;
  return p.ok;
}

std::string validate_band_graph(const BandGraphShape& s, int sm_version) {
  if (std::string e = open_cudnn(); !e.empty()) return e;
  GraphKey key{0, static_cast<int>(s.bf16 ? at::kBFloat16 : at::kHalf), bucket(s.pieces), s.heads, s.kv_heads,
               s.head_dim, bucket(s.max_q), bucket(s.max_kv), s.left, s.right, 0.125, s.backward};
  if (s.backward) key.total_q = bucket(s.pieces * s.max_q), key.total_kv = bucket(s.pieces * s.max_kv);
  try {
    // validate() alone checks tensors before their data types are filled in; lowering the graph
    // (no handle needed) checks them again with their sizes in bytes, as the GPU's build does.
    auto g = describe(key, s.bf16 ? at::kBFloat16 : at::kHalf, sm_version);
    fe::error_t e = g->validate();
    if (e.is_good()) e = g->build_operation_graph(nullptr);
    return e.is_good() ? std::string() : e.get_message();
  } catch (const std::exception& e) {
    return e.what();
  }
}

namespace routes {

GroupOutput cudnn_band_forward_pieces(const PieceGroup& g, const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v, double scale) {
  if (std::optional<GroupOutput> r = try_forward(g, q, k, v, scale)) {
    ++g_ran;
    return std::move(*r);
  }
  ++g_handed_back;
  return flash_forward_pieces(g, q, k, v, scale);
}

void cudnn_band_backward_group(const PieceGroup& g, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, double scale,
                               GradAcc& acc) {
  if (try_backward(g, dout, q, k, v, out, lse, scale, acc)) {
    ++g_ran;
    return;
  }
  ++g_handed_back;
  flash_backward_group(g, dout, q, k, v, out, lse, scale, acc);
}

}  // namespace routes

#else  // built without the cudnn-frontend headers

BandRouteCounts cudnn_band_counts() { return {}; }

std::string validate_band_graph(const BandGraphShape&, int) { return "this build has no cudnn-frontend"; }

bool cudnn_band_usable(const at::Tensor&, const at::Tensor&, std::string* why) {
  if (why) *why = "this build has no cudnn-frontend (pip install nvidia-cudnn-frontend, then reconfigure)";
  return false;
}

namespace routes {
GroupOutput cudnn_band_forward_pieces(const PieceGroup&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      double) {
  throw Unsupported("cuDNN band attention: this build has no cudnn-frontend");
}
void cudnn_band_backward_group(const PieceGroup&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               const at::Tensor&, const at::Tensor&, const at::Tensor&, double, GradAcc&) {
  throw Unsupported("cuDNN band attention: this build has no cudnn-frontend");
}
}  // namespace routes

#endif

}  // namespace longhaul::cuda

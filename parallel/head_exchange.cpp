#include "parallel/head_exchange.h"

#include <ATen/ATen.h>

#include <numeric>

#include "core/errors.h"

namespace longhaul {
namespace {
// The permutation that swaps dimensions 0 and 1.
std::vector<int64_t> swap01(size_t dims) {
  std::vector<int64_t> perm(dims);
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[0], perm[1]);
  return perm;
}
int64_t bytes_of(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }
}  // namespace

at::Tensor heads_to_rows(Communicator& group, const at::Tensor& x, const std::vector<int64_t>& rows, int64_t& bytes) {
  const int u = group.size();
  const int64_t tl = x.size(0), hx = x.size(1);
  std::vector<int64_t> split = {tl, u, hx / u};
  split.insert(split.end(), x.sizes().begin() + 2, x.sizes().end());
  std::vector<int64_t> flat = {u * tl, hx / u};
  flat.insert(flat.end(), x.sizes().begin() + 2, x.sizes().end());
  at::Tensor send = x.reshape(split).permute(swap01(split.size())).contiguous().view(flat);  // [U·Tl, Hx/U, ...]
  std::vector<int64_t> out_shape = flat;
  out_shape[0] = std::accumulate(rows.begin(), rows.end(), int64_t(0));
  at::Tensor out = at::empty(out_shape, x.options());
  group.all_to_all(out, send, rows, std::vector<int64_t>(u, tl))->wait();
  bytes += bytes_of(send) / u * (u - 1);
  return out;
}

at::Tensor rows_to_heads(Communicator& group, const at::Tensor& y, const std::vector<int64_t>& rows, int64_t& bytes) {
  const int u = group.size();
  const int64_t tl = rows[group.rank()], total = y.size(0), hp = y.size(1);
  std::vector<int64_t> recv_shape = y.sizes().vec();
  recv_shape[0] = u * tl;
  at::Tensor recv = at::empty(recv_shape, y.options());
  at::Tensor send = y.contiguous();
  group.all_to_all(recv, send, std::vector<int64_t>(u, tl), rows)->wait();
  if (total > 0) bytes += bytes_of(send) / total * (total - tl);
  std::vector<int64_t> split = {u, tl};
  split.insert(split.end(), y.sizes().begin() + 1, y.sizes().end());
  std::vector<int64_t> out_shape = {tl, u * hp};
  out_shape.insert(out_shape.end(), y.sizes().begin() + 2, y.sizes().end());
  return recv.view(split).permute(swap01(split.size())).reshape(out_shape);
}

at::Tensor stats_to_rows(Communicator& group, const at::Tensor& s, const std::vector<int64_t>& rows, int64_t& bytes) {
  return heads_to_rows(group, s.transpose(0, 1).contiguous(), rows, bytes).transpose(0, 1).contiguous();
}

at::Tensor stats_to_heads(Communicator& group, const at::Tensor& s, const std::vector<int64_t>& rows, int64_t& bytes) {
  return rows_to_heads(group, s.transpose(0, 1).contiguous(), rows, bytes).transpose(0, 1).contiguous();
}

at::Tensor replicate_kv(const at::Tensor& x, int64_t rep) { return rep == 1 ? x : x.repeat_interleave(rep, 1); }

at::Tensor sum_kv_replicas(const at::Tensor& g, int64_t heads, int64_t rep) {
  return rep == 1 ? g : g.view({g.size(0), heads, rep, g.size(2)}).sum(2);
}

int64_t kv_replication(int64_t h, int64_t hkv, int u, const char* strategy) {
  if (h % u == 0 && hkv % u == 0) return 1;
  if (h % u == 0 && u % hkv == 0) return u / hkv;
  std::string ok;
  for (int64_t d = 1; d <= h; ++d)
    if (h % d == 0 && (hkv % d == 0 || d % hkv == 0)) ok += (ok.empty() ? "" : ", ") + std::to_string(d);
  throw InvalidArgument(detail::str_cat("strategy ", strategy, " needs H % U == 0 and (H_kv % U == 0 or U % H_kv == 0) ",
                                        "for its Ulysses degree U; H = ", h, ", H_kv = ", hkv, ", U = ", u,
                                        ". Degrees that work: ", ok));
}

}  // namespace longhaul

#include "train/grad_sync.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/dtypes.h"

namespace longhaul::train {

double sync_gradients(const std::vector<at::Tensor>& params, Communicator& world, double clip) {
  std::vector<at::Tensor> flat;
  flat.reserve(params.size());
  for (const at::Tensor& p : params) {
    const auto where = p.options().dtype(accumulate_type(p));
    at::Tensor g = p.grad();
    flat.push_back(g.defined() ? g.reshape({-1}).to(where) : at::zeros({p.numel()}, where));
  }
  at::Tensor buf = at::cat(flat);
  if (world.size() > 1) world.all_reduce(buf)->wait();
  const double norm = buf.norm().item<double>();
  if (clip > 0 && norm > clip) buf.mul_(clip / (norm + 1e-6));
  int64_t off = 0;
  for (const at::Tensor& p : params) {
    at::Tensor g = buf.narrow(0, off, p.numel()).view(p.sizes()).to(p.scalar_type());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(g);
    } else {
      p.mutable_grad() = g.clone();
    }
    off += p.numel();
  }
  return norm;
}

}  // namespace longhaul::train

#include "runtime/comm/routed/communicator.h"

#include <ATen/core/Tensor.h>

#include "core/errors.h"

namespace longhaul {
namespace {

class RoutedCommunicator final : public Communicator {
 public:
  RoutedCommunicator(CommPtr host, CommPtr cuda)
      : Communicator(CommOptions{host->timeout()}), host_(std::move(host)), cuda_(std::move(cuda)) {
    if (cuda_ && (cuda_->rank() != host_->rank() || cuda_->size() != host_->size()))
      throw InvalidArgument(detail::str_cat("routed communicator: the ", cuda_->backend(), " backend is rank ",
                                            cuda_->rank(), " of ", cuda_->size(), " but the ", host_->backend(),
                                            " backend is rank ", host_->rank(), " of ", host_->size(),
                                            "; both must span the same ranks in the same order"));
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string backend() const override {
    return cuda_ ? host_->backend() + "+" + cuda_->backend() : host_->backend();
  }

  std::shared_ptr<Communicator> split(int color, int key) override {
    // Both splits are collectives over the same ranks, so every rank makes them in this order.
    CommPtr h = host_->split(color, key);
    CommPtr c = cuda_ ? cuda_->split(color, key) : nullptr;
    if (!h) return nullptr;
    return std::make_shared<RoutedCommunicator>(std::move(h), std::move(c));
  }

 protected:
  bool supports_device(const at::Device& device) const override {
    return device.is_cpu() || (device.is_cuda() && cuda_);
  }

  WorkPtr do_send(const at::Tensor& t, int peer, int tag) override { return route(t).send(t, peer, tag); }
  WorkPtr do_recv(at::Tensor& t, int peer, int tag) override { return route(t).recv(t, peer, tag); }
  WorkPtr do_exchange(const std::vector<P2POp>& ops) override {
    if (ops.empty()) return Work::completed(describe("exchange of 0 operations"));
    Communicator& c = route(ops[0].tensor);
    for (const auto& op : ops) same_device(ops[0].tensor, op.tensor, "exchange");
    return c.exchange(ops);
  }
  WorkPtr do_all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                        const std::vector<int64_t>& in_rows) override {
    same_device(in, out, "all_to_all");
    return route(in).all_to_all(out, in, out_rows, in_rows);
  }
  WorkPtr do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) override {
    same_device(in, out, "all_gather");
    return route(in).all_gather(out, in, rows);
  }
  WorkPtr do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                            ReduceOp op) override {
    same_device(in, out, "reduce_scatter");
    return route(in).reduce_scatter(out, in, rows, op);
  }
  WorkPtr do_all_reduce(at::Tensor& t, ReduceOp op) override { return route(t).all_reduce(t, op); }
  WorkPtr do_broadcast(at::Tensor& t, int root) override { return route(t).broadcast(t, root); }
  WorkPtr do_barrier() override {
    host_->set_timeout(timeout());
    return host_->barrier();
  }

 private:
  // supports_device() has already refused a CUDA tensor when there is no device backend.
  // The deadline set on this communicator is the one its backends wait with.
  Communicator& route(const at::Tensor& t) {
    Communicator& c = t.is_cuda() ? *cuda_ : *host_;
    c.set_timeout(timeout());
    return c;
  }
  void same_device(const at::Tensor& a, const at::Tensor& b, const char* op) const {
    if (a.device().type() != b.device().type())
      throw InvalidArgument(detail::str_cat(describe(op), ": tensors on ", a.device(), " and ", b.device(),
                                            "; one operation moves tensors of one device type (CPU over ",
                                            host_->backend(), cuda_ ? ", CUDA over " + cuda_->backend() : "", ")"));
  }

  CommPtr host_, cuda_;
};

}  // namespace

CommPtr routed::wrap(CommPtr host, CommPtr cuda) {
  LH_CHECK(host != nullptr, "routed::wrap: the host communicator is null");
  return std::make_shared<RoutedCommunicator>(std::move(host), std::move(cuda));
}

}  // namespace longhaul

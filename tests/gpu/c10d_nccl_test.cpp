// The c10d backend over torch's own ProcessGroupNCCL (what a Python script hands longhaul as its
// torch.distributed group): a world of one on this GPU, built here over a TCPStore, wrapped by
// c10d_backend::wrap, running the collectives on CUDA tensors. Skipped, with the reason,
// without a CUDA device; the c10d wrapper's logic on CPU (Gloo) runs in tests/multiprocess (c10d.* tests).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "runtime/comm/c10d/communicator.h"
#include "core/errors.h"

namespace longhaul {
namespace {

TEST(C10dNccl, WrappedProcessGroupNcclRunsCollectivesOnCudaTensors) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device on this machine (torch sees none); the c10d wrapper's logic runs "
                                   "on CPU over Gloo in the c10d.* and torchrun_comm_* tests";
  c10d::TCPStoreOptions so;
  so.port = 0;  // any free port: a world of one
  so.isServer = true;
  so.numWorkers = 1;
  so.waitWorkers = false;
  so.timeout = std::chrono::seconds(30);
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, 0, 1, c10d::ProcessGroupNCCL::Options::create());
  CommOptions co;
  co.timeout = std::chrono::seconds(60);
  CommPtr comm = c10d_backend::wrap(c10::intrusive_ptr<c10d::Backend>(pg), store, co);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->rank(), 0);
  const auto cuda = at::TensorOptions().device(at::kCUDA);

  at::Tensor t = at::arange(1000, cuda.dtype(at::kFloat));
  comm->all_reduce(t)->wait();
  EXPECT_TRUE(at::equal(t.cpu(), at::arange(1000, at::kFloat)));

  at::Tensor b = at::full({64}, 7.0, cuda.dtype(at::kBFloat16));
  comm->broadcast(b, 0)->wait();
  EXPECT_TRUE(at::equal(b.cpu(), at::full({64}, 7.0, at::kBFloat16)));

  at::Tensor in = at::randn({5, 3, 4}, cuda), gathered = at::empty({5, 3, 4}, cuda);
  comm->all_gather(gathered, in)->wait();
  EXPECT_TRUE(at::equal(gathered.cpu(), in.cpu()));

  at::Tensor a2a = at::empty({5, 3, 4}, cuda);
  comm->all_to_all(a2a, in, {5}, {5})->wait();
  EXPECT_TRUE(at::equal(a2a.cpu(), in.cpu()));

  at::Tensor rs = at::empty({5, 3, 4}, cuda);
  comm->reduce_scatter(rs, in)->wait();
  EXPECT_TRUE(at::allclose(rs.cpu(), in.cpu()));

  comm->barrier()->wait();
  // A CPU tensor on an NCCL group is refused by name, not sent to NCCL.
  at::Tensor cpu = at::ones({4});
  EXPECT_THROW(comm->all_reduce(cpu)->wait(), Error);
}

}  // namespace
}  // namespace longhaul

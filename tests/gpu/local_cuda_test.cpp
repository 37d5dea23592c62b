// The local backend on CUDA tensors (one stream per thread-rank). Skipped, with the reason, on a
// machine without a CUDA device; the same code paths for CPU tensors run in tests/unit.
#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <gtest/gtest.h>

#include "runtime/comm/local/communicator.h"
#include "tests/common/collectives.h"

namespace longhaul {
namespace {

int cuda_devices() {
  return at::hasCUDA() ? static_cast<int>(c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).deviceCount()) : 0;
}

TEST(LocalCuda, RingAndCollectivesOnOneDevice) {
  if (cuda_devices() == 0) GTEST_SKIP() << "no CUDA device on this machine (torch sees none); CPU paths are in tests/unit";
  CommOptions o;
  o.timeout = std::chrono::seconds(20);
  local::run_ranks(4, [](Communicator& comm) {
    const c10::Device dev(c10::DeviceType::CUDA, 0);
    local::enter_device_rank(dev);  // a stream of its own per thread-rank
    const int p = comm.size(), r = comm.rank();
    auto opts = at::TensorOptions().device(dev);
    at::Tensor out = at::full({1 << 20}, float(r), opts), in = at::empty({1 << 20}, opts);
    comm.exchange({P2POp::send(out, (r + 1) % p), P2POp::recv(in, (r + p - 1) % p)})->wait();
    EXPECT_TRUE(at::equal(in.cpu(), at::full({1 << 20}, float((r + p - 1) % p))));
    at::Tensor t = at::full({1000}, float(r + 1), opts);
    comm.all_reduce(t)->wait();
    EXPECT_TRUE(at::equal(t.cpu(), at::full({1000}, float(p * (p + 1) / 2))));
    at::Tensor g = at::empty({4 * p}, opts);
    comm.all_gather(g, at::full({4}, float(r), opts))->wait();
    EXPECT_EQ(g.sum().item<float>(), 4.0f * p * (p - 1) / 2);
  }, o);
}

}  // namespace
}  // namespace longhaul

#include "train/device.h"

#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "core/errors.h"

namespace longhaul::train {
namespace {

int cuda_device_count() {
  return at::hasCUDA() ? static_cast<int>(c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).deviceCount()) : 0;
}

std::string devices_here(int n) {
  if (n == 0) return "only cpu";
  return detail::str_cat("cpu and cuda:0", n > 1 ? detail::str_cat("…cuda:", n - 1) : std::string());
}

}  // namespace

c10::Device training_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  int index = -1;  // "cuda": the current device
  if (name != "cuda") {
    size_t used = 0;
    try {
      if (name.rfind("cuda:", 0) == 0) index = std::stoi(name.substr(5), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    LH_CHECK(used > 0 && used == name.size() - 5 && index >= 0, "train: unknown --device '", name,
             "', expected cpu or cuda (or cuda:N)");
  }
  const int n = cuda_device_count();
  if (n == 0)  // a valid request this machine cannot run
    throw Unsupported(detail::str_cat(
        "train: --device ", name, " was asked for, but ",
        at::globalContext().hasCUDART() ? "torch sees no CUDA device on this machine (0 visible; check the driver and "
                                          "CUDA_VISIBLE_DEVICES)"
                                        : "this torch has no CUDA support (a CPU-only build)",
        "; the devices here: ", devices_here(n), " (use --device cpu)"));
  if (index < 0) return c10::Device(c10::kCUDA, c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).getDevice().index());
  LH_CHECK(index < n, "train: --device ", name, " was asked for, but torch sees ", n, " CUDA device", n > 1 ? "s" : "",
           "; the devices here: ", devices_here(n));
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void require_device_transport(Communicator& world, const c10::Device& device) {
  if (device.is_cpu() || world.size() == 1) return;
  at::Tensor probe = at::zeros({1}, at::TensorOptions().device(device));
  try {
    world.all_reduce(probe)->wait();  // every rank has the same backend: all pass or all throw here
  } catch (const Unsupported& e) {
    throw InvalidArgument(detail::str_cat("train --device ", device.str(), ": the world's communicator (backend ",
                                          world.backend(), ") cannot move CUDA tensors (", e.what(),
                                          "); use a build with NCCL, a GPU of its own for every rank, and --backend auto (the "
                                          "default) or nccl; the start-up line's `nccl off (...)` and `longhaul info` say "
                                          "why NCCL is off (docs/launch.md)"));
  }
}

void synchronize(const c10::Device& device) {
  if (device.is_cpu()) return;
  c10::impl::VirtualGuardImpl(device.type()).getStream(device).synchronize();
}

}  // namespace longhaul::train

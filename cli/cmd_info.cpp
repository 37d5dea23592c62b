// `longhaul info`: what this build contains and what the machine offers.
#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <iostream>

#include "core/host_memory.h"
#include "core/report.h"
#include "cli/cli.h"
#include "launch/placement.h"
#include "longhaul/config.h"
#if LONGHAUL_WITH_CUDA
#include "attention/cuda/route_cudnn.h"
#include "attention/cuda/route_cudnn_band.h"
#endif

namespace longhaul::cli {

int cmd_info(const std::vector<std::string>& args) {
  InitOptions init_opts;
  double timeout_s = 300;
  bool json = false;
  po::options_description desc("longhaul info");
  add_world_options(desc, init_opts, timeout_s);
  desc.add_options()("json", po::bool_switch(&json), "one JSON object instead of the list");
  po::variables_map vm;
  if (!parse(args, desc, vm, "longhaul info [options]")) return 0;
  init_opts.log_config = !json;
  World world = init(init_opts);
  return guarded(world.rank(), [&] {
    int64_t devices = 0;
    if (at::hasCUDA()) devices = c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).deviceCount();
    report::Row row;
    row.add("version", std::string(LONGHAUL_VERSION))
        .add("torch", std::string(LONGHAUL_TORCH_VERSION))
        .add("backends", std::string("local") + (LONGHAUL_WITH_MPI ? ",mpi" : "") + (LONGHAUL_WITH_C10D ? ",c10d" : "") +
                             (LONGHAUL_WITH_NCCL ? ",nccl" : ""))
        .add("cuda_built", int64_t(LONGHAUL_WITH_CUDA))
        .add("cuda_devices", devices)
        .add("mpi_built", int64_t(LONGHAUL_WITH_MPI))
        .add("nccl_built", int64_t(LONGHAUL_WITH_NCCL))
        .add("cudnn_band_built", int64_t(LONGHAUL_WITH_CUDNN_FRONTEND))
#if LONGHAUL_WITH_CUDA
        // What windows run on (LONGHAUL_CUDA_BAND): flash, cudnn or auto.
        .add("cuda_band", std::string(cuda::band_mode_name(cuda::band_mode())))
        // What documents and zigzag pairs run on (LONGHAUL_CUDA_VARLEN): auto, cudnn or flash.
        .add("cuda_varlen", std::string(cuda::varlen_mode_name(cuda::varlen_mode())))
#endif
        .add("hdf5_built", int64_t(LONGHAUL_WITH_HDF5))
        .add("python_built", int64_t(LONGHAUL_WITH_PYTHON))
        .add("launcher", world.launcher())
        .add("backend", world.comm()->backend())
        // Whether CUDA tensors go over NCCL, and why: "off (ranks 0 and 2 on host a both use GPU …)".
        .add("nccl", world.nccl_note())
        .add("world_size", int64_t(world.size()))
        .add("threads", int64_t(world.threads()))
        .add("affinity_cpus", int64_t(affinity_cpus()));
    // What this host may still give, and what bounds it: MemAvailable or a memory cgroup's limit.
    const HostMemory host = host_memory();
    row.add("host_memory", memory_size(host.available_bytes) + " available (" + host.bound + ")");
    // Every rank's host, local rank and GPU: what the launcher said against where the ranks are.
    const std::vector<RankPlace> places =
        gather_placement(*world.host_comm(), world.local_rank(), world.local_size(), world.gpu());
    const std::string wrong = check_placement(places);
    row.add("placement", describe_placement(places)).add("placement_check", wrong.empty() ? std::string("ok") : wrong);
    row.add("gpus", describe_gpus(places));  // each rank's GPU by UUID: two ranks on one show here
    const int rc = wrong.empty() ? 0 : 2;  // 2: bad input, the launcher's
    if (world.rank() != 0) return rc;
    if (json) {
      report::print_json(std::cout, {row});
    } else {
      for (const auto& [k, v] : row.cells) {
        std::cout << k << ": ";
        std::visit([](const auto& x) { std::cout << x; }, v);
        std::cout << "\n";
      }
    }
    if (!wrong.empty())
      std::cerr << "longhaul: error (rank 0): the launcher's local ranks contradict the hosts: " << wrong << std::endl;
    return rc;
  });
}

}  // namespace longhaul::cli

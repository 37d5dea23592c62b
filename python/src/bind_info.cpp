// longhaul._C.info(): what this build of longhaul contains (longhaul/config.h), as a dict.
#include <pybind11/pybind11.h>

#include "launch/world.h"
#include "longhaul/config.h"
#if LONGHAUL_WITH_CUDA
#include "attention/cuda/route_cudnn.h"
#include "attention/cuda/route_cudnn_band.h"
#endif
#include "python/src/bindings.h"

namespace py = pybind11;

namespace longhaul::python {

void bind_info(py::module_& m) {
  m.def("info", [] {
    py::dict d;
    d["version"] = LONGHAUL_VERSION;
    d["torch_built"] = LONGHAUL_TORCH_VERSION;
    d["cuda_built"] = bool(LONGHAUL_WITH_CUDA);
    d["cudnn_band_built"] = bool(LONGHAUL_WITH_CUDNN_FRONTEND);
#if LONGHAUL_WITH_CUDA
    // What windows run on, from LONGHAUL_CUDA_BAND (a typo raises, naming the values).
    d["cuda_band"] = cuda::band_mode_name(cuda::band_mode());
    // What documents and zigzag pairs run on, from LONGHAUL_CUDA_VARLEN (likewise).
    d["cuda_varlen"] = cuda::varlen_mode_name(cuda::varlen_mode());
#endif
    d["nccl_built"] = bool(LONGHAUL_WITH_NCCL);
    d["mpi_built"] = bool(LONGHAUL_WITH_MPI);
    d["hdf5_built"] = bool(LONGHAUL_WITH_HDF5);
    d["c10d_built"] = bool(LONGHAUL_WITH_C10D);
    d["python_built"] = bool(LONGHAUL_WITH_PYTHON);
    py::list backends;
    backends.append("local");
    if (LONGHAUL_WITH_MPI) backends.append("mpi");
    if (LONGHAUL_WITH_C10D) backends.append("c10d");
    if (LONGHAUL_WITH_NCCL) backends.append("nccl");
    d["backends"] = backends;
#ifdef PYBIND11_PLATFORM_ABI_ID
    d["pybind11_abi"] = PYBIND11_PLATFORM_ABI_ID;
#endif
    d["affinity_cpus"] = affinity_cpus();
    return d;
  });
}

}  // namespace longhaul::python

// The host memory of a Python training loop on the CPU: malloc's policy (core/host_allocation.h),
// and each process's share of its host's memory as a ceiling on a step (train/host_share.h,
// core/data_limit.h), which longhaul.HostCeiling wraps.
#include <torch/csrc/utils/pybind.h>

#include <optional>

#include "core/data_limit.h"
#include "core/host_allocation.h"
#include "python/src/bindings.h"
#include "train/host_share.h"

namespace py = pybind11;

namespace longhaul::python {
namespace {

// A ceiling set now and lifted by release() (or when collected): a context manager's two halves.
class DataLimit {
 public:
  explicit DataLimit(int64_t growth_bytes) : limit_(std::in_place, growth_bytes) {}
  void release() { limit_.reset(); }

 private:
  std::optional<ScopedDataLimit> limit_;
};

}  // namespace

void bind_host_memory(py::module_& m) {
  m.def("keep_freed_host_memory", &keep_freed_host_memory,
        "Serves every host block from malloc's heap and keeps freed memory for the next step (glibc); "
        "returns False, changing nothing, with another C library.");

  py::class_<train::HostShare>(m, "HostShare", "This process's share of its host's memory")
      .def_readonly("limited", &train::HostShare::limited)
      .def_readonly("bytes", &train::HostShare::bytes)
      .def_readonly("available_bytes", &train::HostShare::available_bytes)
      .def_readonly("processes", &train::HostShare::processes)
      .def_readonly("bound", &train::HostShare::bound)
      .def_readonly("why_not", &train::HostShare::why_not)
      .def("__repr__", [](const train::HostShare& s) { return train::describe(s); });
  m.def(
      "host_share",
      [](Communicator& comm) {
        py::gil_scoped_release no_gil;  // a collective
        train::HostShare s = train::host_share(comm);
        if (s.limited) train::start_thread_pool();
        return s;
      },
      py::arg("comm"));
  m.def("host_share_now", &train::host_share_now, py::arg("share"));
  m.def("data_segment_bytes", &data_segment_bytes);
  m.def("describe_step_share", &train::describe_step_share, py::arg("held_bytes"), py::arg("share"));
  py::class_<DataLimit>(m, "DataLimit", "A ceiling on this process's data segment (RLIMIT_DATA) until release()")
      .def(py::init<int64_t>(), py::arg("growth_bytes"))
      .def("release", &DataLimit::release);
}

}  // namespace longhaul::python

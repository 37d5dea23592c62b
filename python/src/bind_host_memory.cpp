// longhaul._C.keep_freed_host_memory(): the training loop's malloc policy (core/host_allocation.h)
// for a Python process, which a script calls before its first large step.
#include <pybind11/pybind11.h>

#include "core/host_allocation.h"
#include "python/src/bindings.h"

namespace py = pybind11;

namespace longhaul::python {

void bind_host_memory(py::module_& m) {
  m.def("keep_freed_host_memory", &keep_freed_host_memory,
        "Serves every host block from malloc's heap and keeps freed memory for the next step (glibc); "
        "returns False, changing nothing, with another C library.");
}

}  // namespace longhaul::python

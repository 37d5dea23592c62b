// longhaul._C: the torch extension behind the `longhaul` Python package. Errors from the library
// become Python exceptions with the C++ message: InvalidArgument → ValueError, Unsupported →
// NotImplementedError, CommError → longhaul.CommError and TimeoutError → longhaul.CommTimeout
// (both RuntimeErrors), any other longhaul::Error → RuntimeError, and an allocation that failed
// (c10::OutOfMemoryError, which the library's ATen boundary also makes of the host's failures) →
// torch.OutOfMemoryError, the type PyTorch code catches to free memory and retry.
#include <c10/util/Exception.h>

#include <exception>

#include "python/src/bindings.h"
#include "core/errors.h"

namespace py = pybind11;

namespace {
// Created once at import; the module keeps a reference for as long as the process lives.
PyObject* g_comm_error = nullptr;
PyObject* g_comm_timeout = nullptr;
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "longhaul: context-parallel attention for long sequences (C++ extension)";
  g_comm_error = PyErr_NewExceptionWithDoc("longhaul.CommError", "communication failed (a peer, a message)",
                                           PyExc_RuntimeError, nullptr);
  g_comm_timeout = PyErr_NewExceptionWithDoc("longhaul.CommTimeout", "a communication wait passed its deadline",
                                             g_comm_error, nullptr);
  m.add_object("CommError", py::handle(g_comm_error));
  m.add_object("CommTimeout", py::handle(g_comm_timeout));
  // Local to this module: torch's own functions keep their translation.
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const longhaul::TimeoutError& e) {
      PyErr_SetString(g_comm_timeout, e.what());
    } catch (const longhaul::CommError& e) {
      PyErr_SetString(g_comm_error, e.what());
    } catch (const longhaul::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const longhaul::Unsupported& e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    } catch (const longhaul::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const c10::OutOfMemoryError& e) {
      PyErr_SetString(py::module_::import("torch").attr("OutOfMemoryError").ptr(), e.what_without_backtrace());
    }
  });
  longhaul::python::bind_comm(m);
  longhaul::python::bind_mask(m);
  longhaul::python::bind_plan(m);
  longhaul::python::bind_context_parallel(m);
  longhaul::python::bind_data(m);
  longhaul::python::bind_info(m);
  longhaul::python::bind_degrees(m);
  longhaul::python::bind_host_memory(m);
  longhaul::python::bind_loss(m);
}

// Communicators, longhaul.init() and the process's world. The World lives in this file (one per
// process, as MPI allows one MPI_Init): Python sees a snapshot of its launch facts plus the
// communicator, and shutdown() (registered with atexit by the package) ends it, finalising MPI
// while the interpreter is still whole. Communicators outliving it stay safe to destroy.
#include <torch/csrc/utils/pybind.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

#include "launch/world.h"
#include "longhaul/config.h"
#include "python/src/bindings.h"
#include "runtime/comm/comm.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/comm/checked/communicator.h"
#include "runtime/comm/nccl_order/communicator.h"
#include "core/errors.h"

#if LONGHAUL_WITH_C10D
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "runtime/comm/c10d/communicator.h"
#endif

namespace py = pybind11;

namespace longhaul::python {
namespace {

// What longhaul.init() returns: the world's facts, fixed at init, and its communicator.
struct WorldView {
  int rank, world_size, local_rank, local_size, threads, device;
  std::string launcher, backend, nccl;
  CommPtr comm;
};

std::mutex g_world_mu;
std::unique_ptr<World> g_world;
// The options the world was created with, as requested: a later init() may repeat them or leave
// them out, not change them (a second world would need a second MPI_Init, and the world's
// communicators keep the deadline they were made with).
struct RequestedWorld {
  std::string backend;
  double timeout_s;
  int threads;
};
RequestedWorld g_requested;

constexpr double kDefaultTimeoutS = 300.0;

WorldView view_of(const World& w) {
  return {w.rank(), w.size(), w.local_rank(), w.local_size(), w.threads(), w.device(), w.launcher(),
          w.comm()->backend(), w.nccl_note(), w.comm()};
}

std::chrono::milliseconds to_ms(double seconds) { return timeout_of_seconds(seconds, "timeout"); }

std::string seconds_text(double s) {
  std::ostringstream os;
  os << s << " s";
  return os.str();
}

// The first call creates the world; later calls return it, and refuse options that differ from
// the ones it was created with.
WorldView init_world(const std::string& backend, std::optional<double> timeout_s, std::optional<int> threads,
                     bool log_config) {
  std::lock_guard<std::mutex> lock(g_world_mu);
  if (!g_world) {
    InitOptions o;
    o.backend = backend_from_string(backend);
    o.timeout = to_ms(timeout_s.value_or(kDefaultTimeoutS));
    o.threads = threads.value_or(0);
    o.log_config = log_config;
    g_world = std::make_unique<World>(init(o));
    g_requested = {backend, timeout_s.value_or(kDefaultTimeoutS), threads.value_or(0)};
    return view_of(*g_world);
  }
  if (backend != "auto" && backend != g_requested.backend) {
    // Compared with the request, not comm()->backend(): a routed world reads "mpi+nccl".
    throw InvalidArgument("longhaul.init: the world already exists with backend " + g_world->comm()->backend() +
                          " (requested as " + g_requested.backend + "); cannot re-initialise it with backend " +
                          backend);
  }
  if (timeout_s && *timeout_s != g_requested.timeout_s) {
    to_ms(*timeout_s);  // a bad value is named as such first
    throw InvalidArgument("longhaul.init: the world already exists with timeout " +
                          seconds_text(g_requested.timeout_s) + "; cannot change it to " + seconds_text(*timeout_s) +
                          " (call init() once, or leave timeout out of later calls)");
  }
  if (threads && *threads != g_requested.threads) {
    throw InvalidArgument("longhaul.init: the world already exists with threads=" +
                          std::to_string(g_requested.threads) + " (" + std::to_string(g_world->threads()) +
                          " in use); cannot change it to " + std::to_string(*threads) +
                          " (call init() once, or leave threads out of later calls)");
  }
  return view_of(*g_world);
}

void shutdown_world() {
  std::lock_guard<std::mutex> lock(g_world_mu);
  g_world.reset();
}

}  // namespace

void bind_comm(py::module_& m) {
  py::class_<Communicator, CommPtr>(m, "Communicator", "A group of ranks (longhaul's communicator)")
      .def_property_readonly("rank", &Communicator::rank)
      .def_property_readonly("size", &Communicator::size)
      .def_property_readonly("backend", &Communicator::backend)
      .def_property_readonly("timeout", [](const Communicator& c) { return c.timeout().count() / 1000.0; })
      .def("barrier", [](Communicator& c) { c.barrier()->wait(); }, py::call_guard<py::gil_scoped_release>())
      .def(
          "all_reduce",
          [](Communicator& c, at::Tensor t, const std::string& op) {
            LH_CHECK(t.is_contiguous(), "all_reduce: the tensor must be contiguous (it is reduced in place)");
            const ReduceOp r = op == "sum" ? ReduceOp::Sum : op == "max" ? ReduceOp::Max : op == "min" ? ReduceOp::Min
                             : throw InvalidArgument("all_reduce: unknown op '" + op + "', expected sum, max or min");
            c.all_reduce(t, r)->wait();
            return t;
          },
          py::arg("tensor"), py::arg("op") = "sum", py::call_guard<py::gil_scoped_release>(),
          "Reduces `tensor` over the group in place and returns it.")
      .def("split", &Communicator::split, py::arg("color"), py::arg("key"), py::call_guard<py::gil_scoped_release>())
      .def("__repr__", [](const Communicator& c) {
        return "<longhaul.Communicator backend=" + c.backend() + " rank=" + std::to_string(c.rank()) + "/" +
               std::to_string(c.size()) + ">";
      });

  py::class_<WorldView>(m, "World", "The processes of this job, as longhaul.init() found them")
      .def_readonly("rank", &WorldView::rank)
      .def_readonly("world_size", &WorldView::world_size)
      .def_readonly("local_rank", &WorldView::local_rank)
      .def_readonly("local_size", &WorldView::local_size)
      .def_readonly("threads", &WorldView::threads)
      .def_readonly("device", &WorldView::device, "CUDA device of this rank, -1 without CUDA")
      .def_readonly("launcher", &WorldView::launcher, "mpirun, torchrun, env, slurm or single process")
      .def_readonly("backend", &WorldView::backend)
      .def_readonly("nccl", &WorldView::nccl,
                    "whether CUDA tensors go over NCCL, and why: 'on (every rank has a GPU of its own)'")
      .def_readonly("comm", &WorldView::comm)
      .def("__repr__", [](const WorldView& w) {
        return "<longhaul.World rank " + std::to_string(w.rank) + "/" + std::to_string(w.world_size) + " launcher " +
               w.launcher + " backend " + w.backend + ">";
      });

  m.def("init", &init_world, py::arg("backend") = "auto", py::arg("timeout") = py::none(),
        py::arg("threads") = py::none(),
        py::arg("log_config") = true, py::call_guard<py::gil_scoped_release>());
  m.def("world_initialized", [] {
    std::lock_guard<std::mutex> lock(g_world_mu);
    return g_world != nullptr;
  });
  m.def("shutdown", &shutdown_world, py::call_guard<py::gil_scoped_release>());
  m.def(
      "local_world",
      [](int size, std::optional<double> timeout_s) {
        LH_CHECK(size >= 1, "local_world: size must be >= 1, got ", size);
        CommOptions o;
        if (timeout_s) o.timeout = to_ms(*timeout_s);
        return local::create_world(size, o);
      },
      py::arg("size"), py::arg("timeout") = py::none(),
      "`size` communicators of one group of thread-ranks in this process (CPU and CUDA tensors): give one to "
      "each of `size` threads. For tests; every rank's collective must be entered from its own thread.");

#if LONGHAUL_WITH_C10D
  m.def(
      "from_process_group",
      [](const c10::intrusive_ptr<c10d::ProcessGroup>& group, const std::string& device, std::optional<double> timeout_s) {
        CommOptions o;
        if (timeout_s) o.timeout = to_ms(*timeout_s);
        const c10::DeviceType d = device == "cpu" ? c10::DeviceType::CPU : device == "cuda" ? c10::DeviceType::CUDA
                                : throw InvalidArgument("from_process_group: device must be cpu or cuda, got '" + device + "'");
        // NCCL-order mode checks NCCL's rules on CPU groups; a CUDA group's transfers are
        // stream-ordered, which its host-side bookkeeping cannot follow.
        if (nccl_order::requested_by_env() && d != c10::DeviceType::CPU)
          throw InvalidArgument("from_process_group: LONGHAUL_NCCL_ORDER=1 checks NCCL's rules over CPU groups "
                                "(Gloo); this wraps the group's CUDA backend, which needs no emulation: unset it");
        CommPtr comm = c10d_backend::wrap(group, d, o);
        if (nccl_order::requested_by_env()) comm = nccl_order::wrap(comm);
        return checked::requested_by_env() ? checked::wrap(comm) : comm;
      },
      py::arg("group"), py::arg("device") = "cpu", py::arg("timeout") = py::none(),
      "Wraps a torch.distributed ProcessGroup (its backend for `device`; CPU tensors always take its CPU "
      "backend, or a Gloo group made once beside a group that has none, e.g. init_process_group('nccl')) as a "
      "longhaul Communicator "
      "(under NCCL's matching and stream order when LONGHAUL_NCCL_ORDER=1, with every collective compared "
      "across ranks first when LONGHAUL_CHECK_COLLECTIVES=1).");
  c10d_backend::destroy_groups_off_thread();  // communicators are dropped with the GIL held here
  m.def("release_process_groups", &c10d_backend::release_wrapped, py::call_guard<py::gil_scoped_release>(),
        "Lets go of every wrapped torch.distributed group and every group longhaul made (at interpreter exit: "
        "registered by the package).");
#endif
}

}  // namespace longhaul::python

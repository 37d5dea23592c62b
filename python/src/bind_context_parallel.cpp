// longhaul._C.ContextParallel: the strategy's forward and backward over local shards. The
// autograd Function lives in Python (longhaul/context_parallel.py) so that errors raised in
// backward reach the caller of loss.backward() as the same Python exceptions as in forward.
#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <tuple>
#include <utility>

#include "parallel/context_parallel.h"
#include "python/src/bindings.h"
#include "python/src/plan.h"
#include "core/errors.h"

namespace py = pybind11;

namespace longhaul::python {
namespace {

using Window = std::optional<std::pair<int64_t, int64_t>>;

// A mask given whole, or causal, the plan's documents and an inclusive (left, right) window, as
// Mask composes them.
Mask make_mask(const ShardPlan& plan, bool causal, const Window& window, const std::optional<Mask>& mask) {
  if (mask) {
    LH_CHECK(!causal && !window, "attention: give either mask= or causal=/window=, not both (mask ",
             mask->describe(), ")");
    return *mask;
  }
  Mask m = causal ? Mask::causal() : Mask::full();
  if (plan.cu_seqlens().size() > 2) m = m.documents(plan.cu_seqlens());
  if (window) {
    LH_CHECK(window->first >= 0 && window->second >= 0, "attention: window (left, right) must be >= 0, got (",
             window->first, ", ", window->second, ")");
    m = m.window(window->first, window->second);
  }
  return m;
}

std::shared_ptr<ContextParallel> make_cp(const CommPtr& group, const std::string& strategy, const std::string& layout,
                                         int ulysses_degree, const std::string& inner, bool overlap, double scale) {
  LH_CHECK(group != nullptr, "ContextParallel: no group");
  Options o;
  o.strategy = strategy_from_string(strategy);
  o.layout = layout_from_string(layout);
  o.ulysses_degree = ulysses_degree;
  o.inner = strategy_from_string(inner);
  o.overlap = overlap;
  o.scale = scale;
  return std::make_shared<ContextParallel>(group, o);
}

using Backward = AttentionGrads (ContextParallel::*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const ShardPlan&, const Mask&);

// A backward method bound with Python's arguments: (dq, dk, dv).
auto bind_backward(Backward method) {
  return [method](ContextParallel& cp, const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse, const GroupPlan& p, bool causal,
                  const Window& window, const std::optional<Mask>& mask) {
    AttentionGrads g = (cp.*method)(dout.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(), out, lse,
                                    p.plan, make_mask(p.plan, causal, window, mask));
    return std::make_tuple(g.dq, g.dk, g.dv);
  };
}

}  // namespace

void bind_context_parallel(py::module_& m) {
  py::class_<ContextParallel, std::shared_ptr<ContextParallel>>(m, "ContextParallel",
                                                                "Attention over a sequence sharded across a CP group")
      .def(py::init(&make_cp), py::arg("group"), py::arg("strategy") = "ring", py::arg("layout") = "zigzag",
           py::arg("ulysses_degree") = 1, py::arg("inner") = "ring", py::arg("overlap") = true, py::arg("scale") = 0.0)
      .def_property_readonly("group", &ContextParallel::group)
      .def_property_readonly("strategy", [](const ContextParallel& cp) { return std::string(to_string(cp.options().strategy)); })
      .def_property_readonly("layout", [](const ContextParallel& cp) { return std::string(to_string(cp.options().layout)); })
      .def_property_readonly("ulysses_degree", [](const ContextParallel& cp) { return cp.options().ulysses_degree; })
      .def(
          "forward",
          [](ContextParallel& cp, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const GroupPlan& p,
             bool causal, const Window& window, const std::optional<Mask>& mask) {
            AttentionOutput o = cp.forward(q.contiguous(), k.contiguous(), v.contiguous(), p.plan,
                                           make_mask(p.plan, causal, window, mask));
            return std::make_pair(o.out, o.lse);
          },
          py::arg("q"), py::arg("k"), py::arg("v"), py::arg("plan"), py::arg("causal") = false,
          py::arg("window") = py::none(), py::arg("mask") = py::none(), py::call_guard<py::gil_scoped_release>(),
          "(out [Tl, H, D], lse [H, Tl]) of this rank's queries; a collective")
      .def("backward", bind_backward(&ContextParallel::backward), py::arg("dout"), py::arg("q"), py::arg("k"),
           py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("plan"), py::arg("causal") = false,
           py::arg("window") = py::none(), py::arg("mask") = py::none(), py::call_guard<py::gil_scoped_release>(),
           "(dq, dk, dv) of this rank's shards in the input dtype; a collective")
      .def("backward_of_agreed_forward", bind_backward(&ContextParallel::backward_of_agreed_forward),
           py::arg("dout"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("plan"),
           py::arg("causal") = false, py::arg("window") = py::none(), py::arg("mask") = py::none(),
           py::call_guard<py::gil_scoped_release>(),
           "backward of a forward call the group agreed on, with that call's arguments and results (an autograd "
           "Function's backward): no agreement collective; a collective");
}

}  // namespace longhaul::python

// longhaul._C.ShardPlan: how a packed global sequence is split over a CP group (parallel/shard_plan.h).
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>

#include "python/src/bindings.h"
#include "python/src/plan.h"
#include "core/errors.h"

namespace py = pybind11;

namespace longhaul::python {
namespace {

GroupPlan make_plan(int64_t T, std::optional<at::Tensor> cu_seqlens, const std::string& layout, const CommPtr& group,
                    int64_t min_chunk, const std::optional<Mask>& mask) {
  LH_CHECK(group != nullptr, "ShardPlan: no group");
  if (cu_seqlens) {
    LH_CHECK(cu_seqlens->dim() == 1, "ShardPlan: cu_seqlens must be 1-D global offsets [0, ..., T], got shape ",
             cu_seqlens->sizes());
    cu_seqlens = cu_seqlens->cpu().to(at::kLong).contiguous();
  }
  if (mask)  // balanced is cut by the mask's area; documents from cu_seqlens, else the mask's
    return {ShardPlan::for_mask(T, *mask, layout_from_string(layout), group->size(), group->rank(), min_chunk,
                                cu_seqlens),
            group};
  return {ShardPlan(T, cu_seqlens, layout_from_string(layout), group->size(), group->rank(), min_chunk), group};
}

at::Tensor cu_tensor(const std::vector<int64_t>& cu) { return at::tensor(cu, at::kLong); }

}  // namespace

void bind_plan(py::module_& m) {
  py::class_<GroupPlan>(m, "ShardPlan", "How a packed global sequence of T tokens is split over a CP group")
      .def(py::init(&make_plan), py::arg("T"), py::arg("cu_seqlens"), py::arg("layout"), py::arg("group"),
           py::arg("min_chunk") = 64, py::arg("mask") = py::none())
      .def_property_readonly("T", [](const GroupPlan& p) { return p.plan.T(); })
      .def_property_readonly("P", [](const GroupPlan& p) { return p.plan.P(); })
      .def_property_readonly("rank", [](const GroupPlan& p) { return p.plan.rank(); })
      .def_property_readonly("layout", [](const GroupPlan& p) { return std::string(to_string(p.plan.layout())); })
      .def_property_readonly("local_rows", [](const GroupPlan& p) { return p.plan.local_rows(); })
      .def_property_readonly("cu_seqlens", [](const GroupPlan& p) { return cu_tensor(p.plan.cu_seqlens()); },
                             "global document offsets [0, ..., T]")
      .def_property_readonly("positions", [](const GroupPlan& p) { return p.plan.positions().clone(); },
                             "global index of each local row (int64)")
      .def_property_readonly("doc_positions", [](const GroupPlan& p) { return p.plan.doc_positions(); },
                             "position of each local row inside its document (RoPE)")
      .def_property_readonly("local_cu_seqlens", [](const GroupPlan& p) { return p.plan.local_cu_seqlens(); },
                             "offsets of the local runs of rows of one document [0, ..., local_rows]")
      .def("positions_of", [](const GroupPlan& p, int rank) {
        LH_CHECK(rank >= 0 && rank < p.plan.P(), "positions_of: rank ", rank, " outside [0, ", p.plan.P(), ")");
        return p.plan.positions(rank).clone();  // the plan's table is shared: a copy the caller may change
      }, py::arg("rank"))
      .def("area_imbalance", [](const GroupPlan& p, const Mask& m) { return p.plan.area_imbalance(m); },
           py::arg("mask"), "largest rank's masked area / mean rank area")
      .def("shard", [](const GroupPlan& p, const at::Tensor& x) { return p.plan.shard(x); }, py::arg("x"),
           "This rank's rows of a global [T, ...] tensor")
      .def(
          "unshard",
          [](const GroupPlan& p, const at::Tensor& local) {
            LH_CHECK(p.group != nullptr, "unshard: this plan has no group to gather over");
            return p.plan.unshard(local.contiguous(), *p.group);
          },
          py::arg("x"), py::call_guard<py::gil_scoped_release>(),
          "The global [T, ...] tensor from every rank's shard (a collective over the group)")
      .def("__repr__", [](const GroupPlan& p) { return "<longhaul.ShardPlan " + p.plan.describe() + ">"; });
}

}  // namespace longhaul::python

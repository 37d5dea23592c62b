// longhaul._C.plan_bucket_degrees and the rate measurements: the bucket planner
// (parallel/bucket_planner.h) behind longhaul.CpDegrees (python/longhaul/degrees.py).
#include <pybind11/stl.h>

#include "parallel/bucket_planner.h"
#include "parallel/kernel_rate.h"
#include "python/src/bindings.h"

namespace py = pybind11;

namespace longhaul::python {
namespace {

py::list plan(int world, int64_t tokens_per_step, int min_log2, int max_log2, int64_t heads, int64_t kv_heads,
              int64_t head_dim, int layers, const std::string& strategy, const std::string& layout,
              double kernel_gflops, double dense_flops_per_token, double dense_gflops, double memory_gib,
              const std::string& network, int64_t elem_bytes) {
  BucketProblem bp;
  bp.world = world;
  bp.tokens_per_step = tokens_per_step;
  bp.min_log2 = min_log2, bp.max_log2 = max_log2;
  bp.H = heads, bp.H_kv = kv_heads, bp.D = head_dim, bp.elem_bytes = elem_bytes;
  bp.layers = layers;
  bp.strategy = strategy_from_string(strategy);
  bp.layout = layout_from_string(layout);
  bp.kernel_gflops = kernel_gflops;
  bp.dense_flops_per_token = dense_flops_per_token;
  bp.dense_gflops = dense_gflops;
  bp.memory_limit_bytes = memory_gib * double(int64_t(1) << 30);
  std::vector<BucketDegree> table;
  {
    py::gil_scoped_release release;
    table = plan_bucket_degrees(bp, network_preset(network));
  }
  py::list out;
  for (const BucketDegree& b : table) {
    py::list options;
    for (const DegreeOption& o : b.options)
      options.append(py::dict(py::arg("degree") = o.degree, py::arg("sequences_per_group") = o.sequences_per_group,
                              py::arg("step_s") = o.step_s, py::arg("attention_s") = o.attention_s,
                              py::arg("dense_s") = o.dense_s, py::arg("comm_s") = o.comm_s,
                              py::arg("memory_bytes") = o.memory_bytes, py::arg("feasible") = o.feasible,
                              py::arg("note") = o.note));
    out.append(py::dict(py::arg("length") = b.length, py::arg("sequences") = b.sequences,
                        py::arg("degree") = b.degree, py::arg("options") = options));
  }
  return out;
}

}  // namespace

void bind_degrees(py::module_& m) {
  m.def("plan_bucket_degrees", &plan, py::arg("world"), py::arg("tokens_per_step"), py::arg("min_log2"),
        py::arg("max_log2"), py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("layers"),
        py::arg("strategy"), py::arg("layout"), py::arg("kernel_gflops"), py::arg("dense_flops_per_token"),
        py::arg("dense_gflops"), py::arg("memory_gib"), py::arg("network"), py::arg("elem_bytes") = 4,
        "The CP degree of each DD bucket: a list of {length, sequences, degree, options}; ValueError naming "
        "the bucket when no degree fits the memory limit.");
  m.def("measure_kernel_gflops", &measure_kernel_gflops, py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"),
        py::arg("tokens") = 1024, py::call_guard<py::gil_scoped_release>());
  m.def("measure_dense_gflops", &measure_dense_gflops, py::arg("rows"), py::arg("in_features"),
        py::arg("out_features"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace longhaul::python

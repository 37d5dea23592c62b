// longhaul._C.Mask: the attention masks (attention/mask.h): the shorthands, the long-context
// families, any slice list; dense() gives the boolean matrix a test hands to torch SDPA.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <vector>

#include "attention/mask.h"
#include "core/errors.h"
#include "python/src/bindings.h"

namespace py = pybind11;

namespace longhaul::python {
namespace {

// Document offsets from a list or a 1-D integer tensor.
std::vector<int64_t> to_offsets(const py::object& cu) {
  if (THPVariable_Check(cu.ptr())) {
    const at::Tensor t = THPVariable_Unpack(cu.ptr());
    LH_CHECK(t.dim() == 1, "Mask: document offsets must be 1-D [0, ..., T], got shape ", t.sizes());
    const at::Tensor c = t.cpu().to(at::kLong).contiguous();
    return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
  }
  return cu.cast<std::vector<int64_t>>();
}

// (q0, q1, k0, k1, type) with type full | causal | inverse_causal | bi_causal, or
// (q0, q1, k0, k1, (lo, hi)) for a band lo <= j - i <= hi.
MaskSlice to_slice(const py::handle& h) {
  const auto t = h.cast<py::tuple>();
  LH_CHECK(t.size() == 5, "Mask.from_slices: a slice is (q_begin, q_end, k_begin, k_end, type), got ", t.size(),
           " items");
  const int64_t q0 = t[0].cast<int64_t>(), q1 = t[1].cast<int64_t>(), k0 = t[2].cast<int64_t>(),
                k1 = t[3].cast<int64_t>();
  if (py::isinstance<py::str>(t[4])) {
    const auto type = t[4].cast<std::string>();
    if (type == "full") return MaskSlice::full(q0, q1, k0, k1);
    if (type == "causal") return MaskSlice::causal(q0, q1, k0, k1);
    if (type == "inverse_causal") return MaskSlice::inverse_causal(q0, q1, k0, k1);
    if (type == "bi_causal") return MaskSlice::bi_causal(q0, q1, k0, k1);
    throw InvalidArgument("Mask.from_slices: unknown slice type '" + type +
                          "', expected full, causal, inverse_causal, bi_causal or (lo, hi)");
  }
  const auto band = t[4].cast<std::pair<int64_t, int64_t>>();
  return MaskSlice::band(q0, q1, k0, k1, band.first, band.second);
}

}  // namespace

void bind_mask(py::module_& m) {
  py::class_<Mask>(m, "Mask", "Which keys each query sees (global positions); see attention/mask.h")
      .def_static("full", [](std::optional<int64_t> t) { return t ? masks::full(*t) : Mask::full(); },
                  py::arg("T") = py::none())
      .def_static("causal", [](std::optional<int64_t> t) { return t ? masks::causal(*t) : Mask::causal(); },
                  py::arg("T") = py::none())
      .def_static("full_document", [](const py::object& cu) { return masks::full_document(to_offsets(cu)); },
                  py::arg("cu_seqlens"))
      .def_static("causal_document", [](const py::object& cu) { return masks::causal_document(to_offsets(cu)); },
                  py::arg("cu_seqlens"))
      .def_static("share_question", [](const py::object& cu) { return masks::share_question(to_offsets(cu)); },
                  py::arg("cu_seqlens"))
      .def_static("causal_blockwise", [](const py::object& cu) { return masks::causal_blockwise(to_offsets(cu)); },
                  py::arg("cu_seqlens"))
      .def_static("prefix_lm_causal", &masks::prefix_lm_causal, py::arg("T"), py::arg("prefix"))
      .def_static(
          "prefix_lm_document",
          [](const py::object& cu, int64_t prefix) { return masks::prefix_lm_document(to_offsets(cu), prefix); },
          py::arg("cu_seqlens"), py::arg("prefix"))
      .def_static("sliding_window", &masks::sliding_window, py::arg("T"), py::arg("w"))
      .def_static("sliding_window_causal", &masks::sliding_window_causal, py::arg("T"), py::arg("w"))
      .def_static("global_sliding_window", &masks::global_sliding_window, py::arg("T"), py::arg("global_tokens"),
                  py::arg("w"))
      .def_static(
          "block_causal_document",
          [](const py::object& cu, int64_t block) { return masks::block_causal_document(to_offsets(cu), block); },
          py::arg("cu_seqlens"), py::arg("block"))
      .def_static(
          "family",
          [](const std::string& name, int64_t t, const py::object& cu, int64_t param, int64_t param2) {
            return masks::make(name, t, cu.is_none() ? std::vector<int64_t>{} : to_offsets(cu), param, param2);
          },
          py::arg("name"), py::arg("T"), py::arg("cu_seqlens") = py::none(), py::arg("param") = 0,
          py::arg("param2") = 0, "A family by name (longhaul.Mask.families()); param: w, prefix or block size")
      .def_static(
          "packed_family",
          [](const std::string& name, const py::object& sequences, const py::object& cu, int64_t param,
             int64_t param2) {
            return masks::make_packed(name, to_offsets(sequences),
                                      cu.is_none() ? std::vector<int64_t>{} : to_offsets(cu), param, param2);
          },
          py::arg("name"), py::arg("sequences"), py::arg("cu_seqlens") = py::none(), py::arg("param") = 0,
          py::arg("param2") = 0,
          "A family on independent sequences packed back to back (offsets `sequences`; documents "
          "cu_seqlens inside them): no query sees another sequence; the families without documents hold "
          "within each document, share_question and causal_blockwise within each sequence")
      .def_static("families", &masks::family_names)
      .def_static(
          "from_slices",
          [](int64_t t, const py::iterable& slices, const std::string& name) {
            std::vector<MaskSlice> s;
            for (const auto& h : slices) s.push_back(to_slice(h));
            return Mask::from_slices(t, std::move(s), name);
          },
          py::arg("T"), py::arg("slices"), py::arg("name") = "slices")
      .def("documents", [](const Mask& self, const py::object& cu) { return self.documents(to_offsets(cu)); },
           py::arg("cu_seqlens"))
      .def("window", &Mask::window, py::arg("left"), py::arg("right"))
      .def_property_readonly("length", [](const Mask& self) -> std::optional<int64_t> {
        return self.length() < 0 ? std::nullopt : std::optional<int64_t>(self.length());
      })
      .def_property_readonly("is_general", &Mask::is_general)
      .def("visible", &Mask::visible, py::arg("i"), py::arg("j"))
      .def("area", &Mask::area, py::arg("q_begin"), py::arg("q_end"), py::arg("k_begin"), py::arg("k_end"),
           "visible pairs of queries [q_begin, q_end) x keys [k_begin, k_end)")
      .def(
          "dense",
          [](const Mask& self, std::optional<int64_t> t) {
            LH_CHECK(t || self.length() >= 0, "Mask.dense: give T for a mask without a length (", self.describe(),
                     ")");
            const int64_t n = t ? *t : self.length();
            LH_CHECK(n >= 0, "Mask.dense: T must be >= 0, got ", n);
            LH_CHECK(self.length() < 0 || n == self.length(), "Mask.dense: T = ", n, " but the mask is defined on [0, ",
                     self.length(), ")");
            const at::Tensor pos = at::arange(n, at::kLong);
            return self.dense(pos, pos);
          },
          py::arg("T") = py::none(), "[T, T] bool, True where query i sees key j (for tests and small T)")
      .def("describe", &Mask::describe)
      .def("__repr__", [](const Mask& self) { return "<longhaul.Mask " + self.describe() + ">"; });
}

}  // namespace longhaul::python

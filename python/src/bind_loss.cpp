// longhaul._C.linear_cross_entropy: the output head and its cross-entropy over chunks of rows
// (train/linear_cross_entropy.h), for a Python training loop whose [tokens, vocab] logits would
// not fit (longhaul.linear_cross_entropy wraps it).
#include <torch/csrc/utils/pybind.h>

#include "python/src/bindings.h"
#include "train/linear_cross_entropy.h"

namespace py = pybind11;

namespace longhaul::python {

void bind_loss(py::module_& m) {
  m.def(
      "linear_cross_entropy",
      [](const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets, int64_t chunk_bytes,
         int64_t ignore_index) {
        // The loss and its softmax in float64 for a float64 head, else float32 (bf16/fp16 matmuls).
        const at::ScalarType loss_dtype = weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
        const int64_t rows = std::max<int64_t>(1, train::loss_chunk_rows(weight.size(0), loss_dtype, chunk_bytes));
        return train::linear_cross_entropy_sum(hidden.to(weight.scalar_type()), weight, targets, loss_dtype, rows,
                                               ignore_index);
      },
      py::arg("hidden"), py::arg("weight"), py::arg("targets"), py::arg("chunk_bytes"), py::arg("ignore_index"));
}

}  // namespace longhaul::python

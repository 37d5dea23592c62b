// longhaul._C data: the HDF5 token store (reader and writer) and the dataset-decomposition
// sampler with the batch builder, as numpy arrays (longhaul/data.py turns them into tensors).
// No torch headers here: nothing in this file needs ATen.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <limits>
#include <optional>
#include <string>

#include "data/batch.h"
#include "data/curriculum.h"
#include "data/decomposition.h"
#include "data/sampler.h"
#include "data/token_source.h"
#include "longhaul/config.h"
#include "python/src/bindings.h"
#include "core/errors.h"

#if LONGHAUL_WITH_HDF5
#include "data/hdf5/store_reader.h"
#include "data/hdf5/pending_store.h"
#endif

namespace py = pybind11;

namespace longhaul::python {
namespace {

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
  return py::array_t<T>(static_cast<py::ssize_t>(v.size()), v.data());
}

// Document n of `who` as int32 token ids: a 1-D array of integers (a list, any integer dtype),
// each within int32; the vocabulary is the store's or the source's to check. Floats, booleans and
// ids past int32 are refused, never cast.
std::vector<int32_t> token_ids(const py::handle& doc, int64_t n, const char* who) {
  const py::array raw = py::array::ensure(doc);
  LH_CHECK(raw && raw.ndim() == 1, who, ": document ", n, " must be a 1-D sequence of token ids");
  const char kind = raw.dtype().kind();
  LH_CHECK(raw.size() == 0 || kind == 'i' || kind == 'u', who, ": document ", n, " holds ",
           std::string(py::str(raw.dtype())), " values; token ids must be integers");
  const auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(raw);
  std::vector<int32_t> tokens(static_cast<size_t>(a.size()));
  for (py::ssize_t i = 0; i < a.size(); ++i) {
    const int64_t t = a.data()[i];
    LH_CHECK(t >= std::numeric_limits<int32_t>::min() && t <= std::numeric_limits<int32_t>::max(), who, ": token ",
             t, " at position ", i, " of document ", n, " does not fit a token id (int32)");
    tokens[static_cast<size_t>(i)] = static_cast<int32_t>(t);
  }
  return tokens;
}

// A DD sampler over a token source, and the batches it plans, read from that source.
class SamplerHandle {
 public:
  SamplerHandle(std::shared_ptr<data::TokenSource> source, int64_t tokens_per_step, int min_log2, int max_log2,
                int dp_size, int dp_rank, const std::string& curriculum, int cycles, uint64_t seed)
      : source_(std::move(source)) {
    data::BucketRange range{min_log2, max_log2};
    range.validate();
    data::SamplerOptions o;
    o.tokens_per_step = tokens_per_step;
    o.dp_size = dp_size;
    o.dp_rank = dp_rank;
    o.curriculum = data::curriculum_from_string(curriculum);
    o.cycles = cycles;
    o.seed = seed;
    sampler_ = std::make_unique<data::DDSampler>(std::make_shared<data::Decomposition>(source_->doc_offsets(), range), o);
  }

  // The next batch as a dict, or None once the epoch is over. share_of(seq_len) -> (groups, group),
  // when given: only that data-parallel group's share of the step's sequences (data::group_share).
  py::object next(const py::object& share_of) {
    std::optional<data::StepPlan> plan;
    {
      py::gil_scoped_release release;
      plan = sampler_->next();
    }
    if (!plan) return py::none();
    int groups = 1, group = 0;
    if (!share_of.is_none()) {
      auto gg = share_of(plan->seq_len).cast<std::pair<int, int>>();
      groups = gg.first, group = gg.second;
    }
    std::optional<data::Batch> b;
    {
      py::gil_scoped_release release;
      // Empty when the step has fewer sequences than groups and this one got none.
      b = data::build_batch(*source_, data::group_share(*plan, groups, group));
    }
    py::dict d;
    d["step"] = b->plan.step;
    d["cycle"] = b->plan.cycle;
    d["seq_len"] = b->plan.seq_len;
    d["tokens"] = to_array(b->tokens);
    d["targets"] = to_array(b->targets);
    d["positions"] = to_array(b->positions);
    d["cu_seqlens"] = to_array(b->cu_seqlens);
    return d;
  }

  const data::DDSampler& sampler() const { return *sampler_; }
  data::DDSampler& sampler() { return *sampler_; }

 private:
  std::shared_ptr<data::TokenSource> source_;
  std::unique_ptr<data::DDSampler> sampler_;
};

#if LONGHAUL_WITH_HDF5
// Writes documents (each a sequence of token ids) to a token store, moved into place once whole;
// returns the token count.
int64_t write_store(const std::string& path, const py::iterable& documents, int64_t vocab_size, int64_t eos_id,
                    const std::string& tokenizer) {
  data::PendingStore out(path, data::StoreMeta{tokenizer, vocab_size, eos_id});
  int64_t n = 0;
  for (const py::handle& doc : documents) out.writer().add_document(token_ids(doc, n++, "write_store"));
  out.commit();
  return out.writer().tokens();
}
#endif

}  // namespace

void bind_data(py::module_& m) {
  py::module_ d = m.def_submodule("data", "token store and dataset-decomposition sampler");
  py::class_<data::TokenSource, std::shared_ptr<data::TokenSource>>(d, "TokenSource")
      .def_property_readonly("num_documents", &data::TokenSource::num_documents)
      .def_property_readonly("num_tokens", &data::TokenSource::num_tokens)
      .def_property_readonly("vocab_size", &data::TokenSource::vocab_size)
      .def_property_readonly("eos_id", &data::TokenSource::eos_id)
      .def_property_readonly("doc_offsets", [](const data::TokenSource& s) { return to_array(s.doc_offsets()); })
      .def("read", [](data::TokenSource& s, int64_t begin, int64_t count) {
        LH_CHECK(begin >= 0 && count >= 0 && begin + count <= s.num_tokens(), "read: tokens [", begin, ", ",
                 begin + count, ") outside [0, ", s.num_tokens(), ")");
        py::array_t<int32_t> out(static_cast<py::ssize_t>(count));
        s.read(begin, count, out.mutable_data());
        return out;
      }, py::arg("begin"), py::arg("count"))
      .def("__repr__", [](const data::TokenSource& s) { return "<longhaul.data " + s.describe() + ">"; });

  // Documents in memory: the token source of builds without HDF5 (and of quick runs).
  py::class_<data::MemoryTokenSource, data::TokenSource, std::shared_ptr<data::MemoryTokenSource>>(d, "MemoryStore")
      .def(py::init([](const py::iterable& documents, int64_t vocab_size, int64_t eos_id) {
             auto s = std::make_shared<data::MemoryTokenSource>(vocab_size, eos_id);
             int64_t n = 0;
             for (const py::handle& doc : documents) s->add_document(token_ids(doc, n++, "MemoryStore"));
             return s;
           }),
           py::arg("documents"), py::arg("vocab_size") = 257, py::arg("eos_id") = 256);

#if LONGHAUL_WITH_HDF5
  py::class_<data::TokenStoreReader, data::TokenSource, std::shared_ptr<data::TokenStoreReader>>(d, "TokenStore")
      // verify: None (once per file on this machine, the default), True (every open), False (never).
      .def(py::init([](const std::string& path, size_t cache, std::optional<bool> verify) {
             data::StoreReaderOptions options;
             options.chunk_cache_bytes = cache;
             options.verify = !verify ? data::StoreVerify::Once
                                      : *verify ? data::StoreVerify::Always : data::StoreVerify::Never;
             return std::make_shared<data::TokenStoreReader>(path, options);
           }),
           py::arg("path"), py::arg("chunk_cache_bytes") = size_t(64) << 20, py::arg("verify") = py::none())
      .def_property_readonly("path", &data::TokenStoreReader::path)
      .def_property_readonly("tokenizer", &data::TokenStoreReader::tokenizer)
      .def("document", [](data::TokenStoreReader& r, int64_t i) {
        LH_CHECK(i >= 0 && i < r.num_documents(), "document ", i, " outside [0, ", r.num_documents(), ")");
        return to_array(r.document(i));
      }, py::arg("index"));
  d.def("write_store", &write_store, py::arg("path"), py::arg("documents"), py::arg("vocab_size") = 257,
        py::arg("eos_id") = 256, py::arg("tokenizer") = "bytes");
#endif

  py::class_<SamplerHandle>(d, "DDSampler")
      .def(py::init<std::shared_ptr<data::TokenSource>, int64_t, int, int, int, int, const std::string&, int, uint64_t>(),
           py::arg("source"), py::arg("tokens_per_step"), py::arg("min_log2"), py::arg("max_log2"), py::arg("dp_size"),
           py::arg("dp_rank"), py::arg("curriculum"), py::arg("cycles"), py::arg("seed"))
      .def("next", &SamplerHandle::next, py::arg("share_of") = py::none())
      .def("save_state", [](const SamplerHandle& s) { return s.sampler().save_state(); })
      .def("restore_state", [](SamplerHandle& s, const std::string& st) { s.sampler().restore_state(st); })
      .def_property_readonly("steps_per_epoch", [](const SamplerHandle& s) { return s.sampler().steps_per_epoch(); })
      .def_property_readonly("step", [](const SamplerHandle& s) { return s.sampler().step(); })
      .def_property_readonly("cycle", [](const SamplerHandle& s) { return s.sampler().cycle(); })
      .def_property_readonly("dropped_tokens", [](const SamplerHandle& s) { return s.sampler().dropped_tokens(); })
      .def_property_readonly("leftover_tokens", [](const SamplerHandle& s) { return s.sampler().leftover_tokens(); })
      .def_property_readonly("decomposed_dropped_tokens",
                             [](const SamplerHandle& s) { return s.sampler().decomposition().dropped_tokens(); });
}

}  // namespace longhaul::python

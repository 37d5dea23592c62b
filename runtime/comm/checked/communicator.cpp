#include "runtime/comm/checked/communicator.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <sstream>

#include "core/env_flag.h"
#include "core/errors.h"

namespace longhaul {
namespace {

enum class Kind : int64_t { AllReduce = 1, Broadcast, AllGather, ReduceScatter, AllToAll, Barrier, Split };

const char* to_string(Kind k) {
  switch (k) {
    case Kind::AllReduce: return "all_reduce";
    case Kind::Broadcast: return "broadcast";
    case Kind::AllGather: return "all_gather";
    case Kind::ReduceScatter: return "reduce_scatter";
    case Kind::AllToAll: return "all_to_all";
    case Kind::Barrier: return "barrier";
    case Kind::Split: return "split";
  }
  return "an unknown collective";
}

// What one rank calls. On the wire: seq, kind, arg, dtype, device, count, row_elems, then two
// lists of size() row counts (-1 where unused).
struct Call {
  Kind kind = Kind::Barrier;
  int64_t arg = -1;        // the reduce op, or the root
  int64_t dtype = -1;      // at::ScalarType; -1 without a tensor
  int64_t device = -1;     // at::DeviceType
  int64_t count = -1;      // elements (all_reduce, broadcast) or all ranks' rows (all_gather, reduce_scatter)
  int64_t row_elems = -1;  // elements per row (the trailing shape) of the row-wise collectives
  // all_gather / reduce_scatter: rows per rank; all_to_all: rows sent to each rank, then rows
  // received from each.
  std::vector<int64_t> rows, rows_in;
};
constexpr int64_t kHead = 7;

int64_t row_elems(const at::Tensor& t) {
  int64_t n = 1;
  for (int64_t d = 1; d < t.dim(); ++d) n *= t.size(d);
  return n;
}

Call bare_call(Kind kind) {
  Call c;
  c.kind = kind;
  return c;
}

Call tensor_call(Kind kind, int64_t arg, const at::Tensor& t) {
  Call c = bare_call(kind);
  c.arg = arg;
  c.dtype = static_cast<int64_t>(t.scalar_type());
  c.device = static_cast<int64_t>(t.device().type());
  return c;
}

// "all_reduce (sum) of 1024 Float elements on cpu", from a gathered row.
std::string describe_call(const int64_t* r, int size) {
  const Kind kind = static_cast<Kind>(r[1]);
  std::ostringstream os;
  os << to_string(kind);
  if (kind == Kind::Barrier || kind == Kind::Split) return os.str();
  if (kind == Kind::AllReduce || kind == Kind::ReduceScatter) os << " (" << to_string(static_cast<ReduceOp>(r[2])) << ")";
  if (kind == Kind::Broadcast) os << " from root " << r[2];
  const std::string dtype = at::toString(static_cast<at::ScalarType>(r[3]));
  const std::string device = c10::DeviceTypeName(static_cast<c10::DeviceType>(r[4]), /*lower_case=*/true);
  if (kind == Kind::AllReduce || kind == Kind::Broadcast) {
    os << " of " << r[5] << ' ' << dtype << " elements on " << device;
  } else if (kind == Kind::AllToAll) {
    os << " of rows of " << r[6] << ' ' << dtype << " elements on " << device << ", sending "
       << at::IntArrayRef(r + kHead, size) << " and receiving " << at::IntArrayRef(r + kHead + size, size) << " rows";
  } else {
    os << " of " << r[5] << " rows of " << r[6] << ' ' << dtype << " elements on " << device << ", rows per rank "
       << at::IntArrayRef(r + kHead, size);
  }
  return os.str();
}

class CheckedCommunicator final : public Communicator {
 public:
  explicit CheckedCommunicator(CommPtr inner) : Communicator(CommOptions{inner->timeout()}), inner_(std::move(inner)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }

  std::shared_ptr<Communicator> split(int color, int key) override {
    check(bare_call(Kind::Split), std::nullopt);
    auto sub = inner().split(color, key);
    return sub ? checked::wrap(sub) : nullptr;
  }

 protected:
  bool supports_device(const at::Device& device) const override { return inner_->moves(device); }
  WorkPtr do_send(const at::Tensor& t, int peer, int tag) override { return inner_send(inner(), t, peer, tag); }
  WorkPtr do_recv(at::Tensor& t, int peer, int tag) override { return inner_recv(inner(), t, peer, tag); }
  WorkPtr do_exchange(const std::vector<P2POp>& ops) override { return inner().exchange(ops); }

  WorkPtr do_all_reduce(at::Tensor& t, ReduceOp op) override {
    Call c = tensor_call(Kind::AllReduce, static_cast<int64_t>(op), t);
    c.count = t.numel();
    check(c, t.device());
    return inner().all_reduce(t, op);
  }
  WorkPtr do_broadcast(at::Tensor& t, int root) override {
    Call c = tensor_call(Kind::Broadcast, root, t);
    c.count = t.numel();
    check(c, t.device());
    return inner().broadcast(t, root);
  }
  WorkPtr do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) override {
    Call c = tensor_call(Kind::AllGather, -1, in);
    c.count = out.size(0);
    c.row_elems = row_elems(in);
    c.rows = rows;
    check(c, in.device());
    return inner().all_gather(out, in, rows);
  }
  WorkPtr do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                            ReduceOp op) override {
    Call c = tensor_call(Kind::ReduceScatter, static_cast<int64_t>(op), in);
    c.count = in.size(0);
    c.row_elems = row_elems(in);
    c.rows = rows;
    check(c, in.device());
    return inner().reduce_scatter(out, in, rows, op);
  }
  WorkPtr do_all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                        const std::vector<int64_t>& in_rows) override {
    Call c = tensor_call(Kind::AllToAll, -1, in);
    c.row_elems = row_elems(in);
    c.rows = in_rows;
    c.rows_in = out_rows;
    check(c, in.device());
    return inner().all_to_all(out, in, out_rows, in_rows);
  }
  WorkPtr do_barrier() override {
    check(bare_call(Kind::Barrier), std::nullopt);
    return inner().barrier();
  }

 private:
  // The deadline set on this communicator is the one inner waits with.
  Communicator& inner() {
    inner_->set_timeout(timeout());
    return *inner_;
  }

  // Gathers every rank's call on the collective's own device (a meta tensor's on the CPU; a
  // barrier's or split's on the CPU where inner moves CPU tensors, else on the current GPU) and
  // throws on every rank when they differ.
  void check(const Call& mine, std::optional<at::Device> on) {
    const int P = size();
    const int64_t width = kHead + 2 * P;
    std::vector<int64_t> row(width, -1);
    row[0] = seq_++;
    row[1] = static_cast<int64_t>(mine.kind);
    row[2] = mine.arg;
    row[3] = mine.dtype;
    row[4] = mine.device;
    row[5] = mine.count;
    row[6] = mine.row_elems;
    std::copy(mine.rows.begin(), mine.rows.end(), row.begin() + kHead);
    std::copy(mine.rows_in.begin(), mine.rows_in.end(), row.begin() + kHead + P);

    at::Device device(at::kCPU);
    if (on && on->is_cuda())
      device = *on;
    else if (!on && !inner_->moves(device))
      device = at::Device(at::kCUDA);
    at::Tensor in = at::tensor(row, at::kLong).view({1, width}).to(device);
    at::Tensor all = at::empty({P, width}, in.options());
    inner().all_gather(all, in)->wait();
    all = all.cpu().contiguous();
    compare(all.data_ptr<int64_t>(), P, width);
  }

  void compare(const int64_t* all, int P, int64_t width) const {
    const int64_t* first = all;
    const Kind kind = static_cast<Kind>(first[1]);
    // Every rank's call against rank 0's; the per-rank rows only where they must agree.
    const int64_t compared = kind == Kind::AllGather || kind == Kind::ReduceScatter ? kHead + P : kHead;
    for (int r = 1; r < P; ++r) {
      const int64_t* other = all + r * width;
      if (!std::equal(first, first + compared, other))
        throw InvalidArgument(detail::str_cat(
            describe("collective"), " #", first[0], " differs across ranks: rank 0 calls ", describe_call(first, P),
            ", rank ", r, " calls ", describe_call(other, P),
            first[0] != other[0] ? " as its collective #" + std::to_string(other[0]) : ""));
    }
    if (kind != Kind::AllToAll) return;
    for (int i = 0; i < P; ++i)
      for (int j = 0; j < P; ++j) {
        const int64_t sent = all[i * width + kHead + j], expected = all[j * width + kHead + P + i];
        if (sent != expected)
          throw InvalidArgument(detail::str_cat(describe("collective"), " #", first[0],
                                                " differs across ranks: in all_to_all, rank ", i, " sends ", sent,
                                                " rows to rank ", j, ", which expects ", expected, " from it"));
      }
  }

  CommPtr inner_;
  int64_t seq_ = 0;
};

}  // namespace

bool checked::requested_by_env() { return env_flag("LONGHAUL_CHECK_COLLECTIVES"); }

CommPtr checked::wrap(CommPtr inner) {
  LH_CHECK(inner != nullptr, "checked::wrap: the inner communicator is null");
  return std::make_shared<CheckedCommunicator>(std::move(inner));
}

}  // namespace longhaul

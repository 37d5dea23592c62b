#include "runtime/comm/mpi/communicator.h"

#include <ATen/ATen.h>

#include <climits>
#include <cstdlib>

#include "runtime/comm/mpi/check.h"
#include "runtime/comm/mpi/datatypes.h"
#include "runtime/comm/mpi/engine.h"
#include "core/errors.h"
#include "core/fnv1a.h"

namespace longhaul {
namespace {

using mpi::Engine;
using mpi::Request;

constexpr int64_t kMaxPiece = int64_t(1) << 30;  // bytes per point-to-point piece

char g_dummy;  // a valid address for zero-size buffers
void* ptr_of(const at::Tensor& t) { return t.numel() > 0 ? t.data_ptr() : &g_dummy; }

int to_int(int64_t v, const std::string& what) {
  if (v > INT_MAX) throw InvalidArgument(detail::str_cat(what, ": count ", v, " exceeds MPI's int range"));
  return static_cast<int>(v);
}

// Row counts and displacements of a collective, in rows of the tensor. Rows of zero bytes (a
// [n, 0] tensor) move nothing: their counts are 0, since the datatype that stands for them
// (row_type(0) is MPI_BYTE) would otherwise move n bytes through a zero-size buffer.
struct RowCounts {
  std::vector<int> counts, displs;
  RowCounts(const std::vector<int64_t>& rows, int64_t row_bytes, const std::string& what) {
    int64_t off = 0;
    for (int64_t r : rows) {
      const int64_t n = row_bytes > 0 ? r : 0;
      counts.push_back(to_int(n, what));
      displs.push_back(to_int(off, what));
      off += n;
    }
  }
};

int64_t row_bytes_of_shape(const at::Tensor& t) {
  int64_t b = t.element_size();
  for (int d = 1; d < t.dim(); ++d) b *= t.size(d);
  return b;
}

// MPI does not report a collective message shorter than its receive (it leaves the rest of the
// buffer unwritten), so the collectives with per-rank counts post, beside the data, one small
// collective of byte counts, and their finish step compares it with what this rank expected: a
// CommError naming the rank and both counts instead of rows silently left as they were. Posted in
// the same call as the data, so it adds no round trip and keeps every rank's collective order.
struct ByteCheck {
  std::vector<int64_t> mine, theirs;  // what this rank sends (per peer, or one value); what it got
};

std::string bytes_text(int64_t bytes, int64_t row_bytes) {
  return row_bytes > 0 && bytes % row_bytes == 0
             ? detail::str_cat(bytes, " bytes (", bytes / row_bytes, " rows of ", row_bytes, " bytes)")
             : detail::str_cat(bytes, " bytes");
}

// A communicator a blocking setup call (MPI_Comm_dup, MPI_Comm_split) makes on the engine thread,
// with its error handler set and its rank and size read.
struct NewComm {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 0;
  void describe() {
    LH_CHECK_MPI(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
  }
};

// Lets the engine poll without pausing while a caller blocks in wait().
class MpiWork : public Work {
 public:
  using Work::Work;

 protected:
  void waiting(bool begin) override {
    begin ? Engine::instance().add_waiter() : Engine::instance().remove_waiter();
  }
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, int rank, int size, CommOptions options)
      : Communicator(options), comm_(comm), rank_(rank), size_(size) {}

  ~MpiCommunicator() override {
    if (!Engine::running()) return;  // MPI already finalised: the handle is gone with it
    MPI_Comm comm = comm_;
    auto work = std::make_shared<Work>("MPI_Comm_free", timeout());
    Engine::instance().submit(work, [comm]() mutable { MPI_Comm_free(&comm); return std::vector<Request>{}; }, {});
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  std::shared_ptr<Communicator> split(int color, int key) override {
    auto made = std::make_shared<NewComm>();  // the engine's own: it may finish after a timeout
    Engine::instance().run_sync(
        [made, parent = comm_, color, key] {
          LH_CHECK_MPI(MPI_Comm_split(parent, color < 0 ? MPI_UNDEFINED : color, key, &made->comm));
          if (made->comm != MPI_COMM_NULL) made->describe();
        },
        timeout(), describe(detail::str_cat("split(color ", color, ", key ", key, ")")));
    if (made->comm == MPI_COMM_NULL) return nullptr;
    CommOptions opts;
    opts.timeout = timeout();
    return std::make_shared<MpiCommunicator>(made->comm, made->rank, made->size, opts);
  }

 protected:
  bool supports_device(const at::Device& device) const override { return device.is_cpu(); }

  WorkPtr do_send(const at::Tensor& t, int peer, int tag) override {
    return submit(detail::str_cat("send to peer ", peer, " (tag ", tag, ", ", nbytes(t), " bytes)"), {t},
                  [this, t, peer, tag] { std::vector<Request> reqs; post_send(reqs, t, peer, tag); return reqs; });
  }

  WorkPtr do_recv(at::Tensor& t, int peer, int tag) override {
    return submit(detail::str_cat("recv from peer ", peer, " (tag ", tag, ", ", nbytes(t), " bytes)"), {t},
                  [this, t, peer, tag] { std::vector<Request> reqs; post_recv(reqs, t, peer, tag); return reqs; });
  }

  WorkPtr do_exchange(const std::vector<P2POp>& ops) override {
    std::vector<at::Tensor> keep;
    std::string peers;
    for (const auto& op : ops) {
      keep.push_back(op.tensor);
      peers += detail::str_cat(peers.empty() ? "" : ", ", op.kind == P2POp::Kind::Send ? "send to peer " : "recv from peer ",
                               op.peer);
    }
    return submit(detail::str_cat("exchange (", peers, ")"), keep, [this, ops] {
      std::vector<Request> reqs;
      for (const auto& op : ops) {  // receives first: lets eager sends land directly
        if (op.kind == P2POp::Kind::Recv) post_recv(reqs, op.tensor, op.peer, op.tag);
      }
      for (const auto& op : ops) {
        if (op.kind == P2POp::Kind::Send) post_send(reqs, op.tensor, op.peer, op.tag);
      }
      return reqs;
    });
  }

  WorkPtr do_all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_rows,
                        const std::vector<int64_t>& in_rows) override {
    const std::string what = describe("all_to_all");
    const int64_t rb = row_bytes_of_shape(in);
    auto rc_out = std::make_shared<RowCounts>(out_rows, rb, what);
    auto rc_in = std::make_shared<RowCounts>(in_rows, rb, what);
    auto check = std::make_shared<ByteCheck>();
    for (int64_t r : in_rows) check->mine.push_back(r * rb);
    check->theirs.assign(size_, -1);
    WorkPtr work = submit("all_to_all", {out, in}, [=, this] {
      MPI_Datatype t = mpi::row_type(rb);
      Request counts, data;
      LH_CHECK_MPI(MPI_Ialltoall(check->mine.data(), 1, MPI_INT64_T, check->theirs.data(), 1, MPI_INT64_T, comm_,
                                 &counts.handle));
      LH_CHECK_MPI(MPI_Ialltoallv(ptr_of(in), rc_in->counts.data(), rc_in->displs.data(), t, ptr_of(out),
                                  rc_out->counts.data(), rc_out->displs.data(), t, comm_, &data.handle));
      return std::vector<Request>{counts, data};
    });
    work->then([=, P = size_] {
      for (int j = 0; j < P; ++j)
        if (check->theirs[j] != out_rows[j] * rb)
          throw CommError(detail::str_cat(what, ": rank ", j, " sent ", bytes_text(check->theirs[j], rb),
                                          " to this rank, which expected ", bytes_text(out_rows[j] * rb, rb),
                                          " from it; the ranks' row counts disagree"));
    });
    return work;
  }

  WorkPtr do_all_gather(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows) override {
    const std::string what = describe("all_gather");
    const int64_t rb = row_bytes_of_shape(in);
    auto rc = std::make_shared<RowCounts>(rows, rb, what);
    const int mine = rc->counts[rank_];
    auto check = std::make_shared<ByteCheck>();
    check->mine = {rows[rank_] * rb};
    check->theirs.assign(size_, -1);
    WorkPtr work = submit("all_gather", {out, in}, [=, this] {
      MPI_Datatype t = mpi::row_type(rb);
      Request counts, data;
      LH_CHECK_MPI(MPI_Iallgather(check->mine.data(), 1, MPI_INT64_T, check->theirs.data(), 1, MPI_INT64_T, comm_,
                                  &counts.handle));
      LH_CHECK_MPI(MPI_Iallgatherv(ptr_of(in), mine, t, ptr_of(out), rc->counts.data(), rc->displs.data(), t,
                                   comm_, &data.handle));
      return std::vector<Request>{counts, data};
    });
    work->then([=, P = size_] {
      for (int j = 0; j < P; ++j)
        if (check->theirs[j] != rows[j] * rb)
          throw CommError(detail::str_cat(what, ": rank ", j, " contributed ", bytes_text(check->theirs[j], rb),
                                          ", this rank expected ", bytes_text(rows[j] * rb, rb),
                                          " from it; the ranks' row counts disagree"));
    });
    return work;
  }

  WorkPtr do_reduce_scatter(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& rows,
                            ReduceOp op) override {
    const std::string what = describe(detail::str_cat("reduce_scatter(", to_string(op), ")"));
    const int64_t per_row = in.dim() == 0 ? 1 : (in.size(0) ? in.numel() / in.size(0) : 0);
    std::vector<int64_t> elems;
    for (int64_t r : rows) elems.push_back(r * per_row);
    auto counts = std::make_shared<RowCounts>(elems, in.element_size(), what);
    const auto type = in.scalar_type();
    // Every rank must pass the same counts, dtype and op: one fingerprint each, gathered.
    Fnv1a h;
    for (int64_t v : elems) h.word(static_cast<uint64_t>(v));
    h.word(static_cast<uint64_t>(type)).word(static_cast<uint64_t>(op));
    auto check = std::make_shared<ByteCheck>();
    check->mine = {static_cast<int64_t>(h.value() >> 1)};
    check->theirs.assign(size_, -1);
    WorkPtr work = submit(detail::str_cat("reduce_scatter(", to_string(op), ")"), {out, in}, [=, this] {
      Request sig, data;
      LH_CHECK_MPI(MPI_Iallgather(check->mine.data(), 1, MPI_INT64_T, check->theirs.data(), 1, MPI_INT64_T, comm_,
                                  &sig.handle));
      LH_CHECK_MPI(MPI_Ireduce_scatter(ptr_of(in), ptr_of(out), counts->counts.data(), mpi::element_type(type),
                                       mpi::reduce_op(op, type), comm_, &data.handle));
      return std::vector<Request>{sig, data};
    });
    work->then([=, P = size_] {
      for (int j = 0; j < P; ++j)
        if (check->theirs[j] != check->mine[0])
          throw CommError(detail::str_cat(what, ": rank ", j, " passed other rows per rank, dtype or op than this "
                                          "rank (", type, ", elements per rank ", at::IntArrayRef(elems),
                                          "); every rank must pass the same"));
    });
    return work;
  }

  WorkPtr do_all_reduce(at::Tensor& t, ReduceOp op) override {
    const auto type = t.scalar_type();
    return submit(detail::str_cat("all_reduce(", to_string(op), ", ", nbytes(t), " bytes)"), {t}, [=, this] {
      std::vector<Request> reqs;
      const int64_t n = t.numel(), piece = kMaxPiece / t.element_size();
      char* base = static_cast<char*>(ptr_of(t));
      for (int64_t off = 0; off < n || (n == 0 && off == 0); off += piece) {
        Request r;
        const int count = static_cast<int>(std::min(piece, n - off));
        LH_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, base + off * t.element_size(), count, mpi::element_type(type),
                                    mpi::reduce_op(op, type), comm_, &r.handle));
        reqs.push_back(r);
        if (n == 0) break;
      }
      return reqs;
    });
  }

  WorkPtr do_broadcast(at::Tensor& t, int root) override {
    const std::string what = describe(detail::str_cat("broadcast from ", root));
    auto check = std::make_shared<ByteCheck>();
    check->mine = {nbytes(t)};
    check->theirs = check->mine;  // the root's count overwrites it on the others
    WorkPtr work = submit(detail::str_cat("broadcast from ", root, " (", nbytes(t), " bytes)"), {t}, [=, this] {
      std::vector<Request> reqs(1);
      LH_CHECK_MPI(MPI_Ibcast(check->theirs.data(), 1, MPI_INT64_T, root, comm_, &reqs[0].handle));
      for_each_piece(t, [&](char* p, int bytes) {
        Request r;
        LH_CHECK_MPI(MPI_Ibcast(p, bytes, MPI_BYTE, root, comm_, &r.handle));
        reqs.push_back(r);
      });
      return reqs;
    });
    work->then([=] {
      if (check->theirs[0] != check->mine[0])
        throw CommError(detail::str_cat(what, ": the root, rank ", root, ", sent ", check->theirs[0],
                                        " bytes, this rank's tensor has ",
                                        check->mine[0], "; every rank must pass the root's shape and dtype"));
    });
    return work;
  }

  WorkPtr do_barrier() override {
    return submit("barrier", {}, [=, this] {
      Request r;
      LH_CHECK_MPI(MPI_Ibarrier(comm_, &r.handle));
      return std::vector<Request>{r};
    });
  }

 private:
  WorkPtr submit(const std::string& op, std::vector<at::Tensor> keep, std::function<std::vector<Request>()> post) {
    auto work = std::make_shared<MpiWork>(describe(op), timeout());
    Engine::instance().submit(work, std::move(post), std::move(keep));
    return work;
  }

  // Calls fn(pointer, bytes) for each piece of at most kMaxPiece bytes (one piece when empty).
  template <typename F>
  static void for_each_piece(const at::Tensor& t, F fn) {
    const int64_t total = nbytes(t);
    char* base = static_cast<char*>(ptr_of(t));
    int64_t off = 0;
    do {
      const int64_t n = std::min(kMaxPiece, total - off);
      fn(base + off, static_cast<int>(n));
      off += n;
    } while (off < total);
  }

  void post_send(std::vector<Request>& reqs, const at::Tensor& t, int peer, int tag) const {
    for_each_piece(t, [&](char* p, int bytes) {
      Request r;
      r.peer = peer;
      LH_CHECK_MPI(MPI_Isend(p, bytes, MPI_BYTE, peer, tag, comm_, &r.handle));
      reqs.push_back(r);
    });
  }

  void post_recv(std::vector<Request>& reqs, const at::Tensor& t, int peer, int tag) const {
    for_each_piece(t, [&](char* p, int bytes) {
      Request r;
      r.peer = peer;
      r.expect_bytes = bytes;
      LH_CHECK_MPI(MPI_Irecv(p, bytes, MPI_BYTE, peer, tag, comm_, &r.handle));
      reqs.push_back(r);
    });
  }

  MPI_Comm comm_;
  int rank_, size_;
};

}  // namespace

bool mpi::launched() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

CommPtr mpi::create_world(CommOptions options) {
  Engine& engine = Engine::instance();
  engine.wait_started(options.timeout);
  auto made = std::make_shared<NewComm>();  // the engine's own: it may finish after a timeout
  engine.run_sync(
      [made] {
        LH_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &made->comm));
        made->describe();
      },
      options.timeout, "backend mpi: creating the world communicator");
  return std::make_shared<MpiCommunicator>(made->comm, made->rank, made->size, options);
}

void mpi::shutdown() { Engine::shutdown(); }
void mpi::set_abort_code(int code) { Engine::set_abort_code(code); }

}  // namespace longhaul

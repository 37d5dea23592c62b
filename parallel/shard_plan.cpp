#include "parallel/shard_plan.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>
#include <queue>

#include "core/enum_names.h"
#include "core/errors.h"
#include "core/fnv1a.h"
#include "runtime/comm/agreement.h"

namespace longhaul {

const char* to_string(Layout l) {
  switch (l) {
    case Layout::Contiguous: return "contiguous";
    case Layout::Zigzag: return "zigzag";
    case Layout::Striped: return "striped";
    case Layout::Balanced: return "balanced";
  }
  return "?";
}

Layout layout_from_string(const std::string& name) {
  return enum_from_string(name, {Layout::Contiguous, Layout::Zigzag, Layout::Striped, Layout::Balanced}, "layout");
}

namespace {
void check_layout(Layout layout, const char* where) {
  const int v = static_cast<int>(layout);
  LH_CHECK(v >= static_cast<int>(Layout::Contiguous) && v <= static_cast<int>(Layout::Balanced), where,
           ": layout ", v, " is not a Layout (contiguous, zigzag, striped or balanced)");
}

// [begin, end) of part i when n items are cut into k parts whose lengths differ by at most one.
std::pair<int64_t, int64_t> part(int64_t n, int64_t k, int64_t i) {
  const int64_t base = n / k, rem = n % k;
  const int64_t b = i * base + std::min(i, rem);
  return {b, b + base + (i < rem ? 1 : 0)};
}
void append_range(std::vector<int64_t>& rows, int64_t b, int64_t e) {
  for (int64_t t = b; t < e; ++t) rows.push_back(t);
}

// Area-balanced rows for `per_rank` equal chunks per rank: largest area first to the
// least-loaded rank with room. Returns the rows and the largest rank area.
std::pair<std::vector<std::vector<int64_t>>, int64_t> place_chunks(int64_t T, const Mask& mask, int P,
                                                                   int64_t per_rank) {
  const int64_t n = int64_t(P) * per_rank;
  std::vector<std::pair<int64_t, int64_t>> chunks;  // (area, index)
  for (int64_t i = 0; i < n; ++i) {
    auto [b, e] = part(T, n, i);
    chunks.push_back({mask.area(b, e, 0, T), i});
  }
  std::stable_sort(chunks.begin(), chunks.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  // (area so far, rank): the least loaded rank with room on top; ties to the lower rank.
  using Load = std::pair<int64_t, int>;
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> heap;
  for (int r = 0; r < P; ++r) heap.push({0, r});
  std::vector<int64_t> count(P, 0);
  std::vector<std::vector<int64_t>> rows(P);
  int64_t most = 0;
  for (const auto& [area, i] : chunks) {
    const auto [load, r] = heap.top();
    heap.pop();
    auto [b, e] = part(T, n, i);
    append_range(rows[r], b, e);
    most = std::max(most, load + area);
    if (++count[r] < per_rank) heap.push({load + area, r});
  }
  for (auto& r : rows) std::sort(r.begin(), r.end());
  return {std::move(rows), most};
}

// Rank r's rows when [0, T) is cut into P (mirrored = false: rank r holds part r) or 2P
// (mirrored: parts r and 2P−1−r) equal parts, and the largest rank area.
std::pair<std::vector<std::vector<int64_t>>, int64_t> ordered_rows(int64_t T, const Mask& mask, int P,
                                                                   bool mirrored) {
  std::vector<std::vector<int64_t>> rows(P);
  int64_t most = 0;
  for (int r = 0; r < P; ++r) {
    int64_t area = 0;
    for (int64_t i : mirrored ? std::vector<int64_t>{r, 2 * P - 1 - r} : std::vector<int64_t>{r}) {
      auto [b, e] = part(T, mirrored ? 2 * P : P, i);
      append_range(rows[r], b, e);
      area += mask.area(b, e, 0, T);
    }
    std::sort(rows[r].begin(), rows[r].end());
    most = std::max(most, area);
  }
  return {std::move(rows), most};
}

// The coarsest chunking whose largest rank area is within 2% of the mean: one range per rank
// (e.g. a symmetric window), then mirrored pairs (causal-like masks), then 8, 16, 32, ... greedy
// chunks per rank (chunks of at least min_chunk tokens); the best one when none is. Fewer
// chunks mean fewer, larger kernel calls and, for local masks, fewer peers with needed keys.
std::vector<std::vector<int64_t>> balanced_rows(int64_t T, const Mask& mask, int P, int64_t min_chunk) {
  const double mean = double(mask.area(0, T, 0, T)) / P;
  std::vector<std::vector<int64_t>> best;
  double best_ratio = 0;
  for (bool mirrored : {false, true}) {
    if (mirrored && T < 2 * P) break;
    auto [rows, most] = ordered_rows(T, mask, P, mirrored);
    const double ratio = mean > 0 ? double(most) / mean : 1.0;
    if (ratio <= 1.02) return std::move(rows);
  }
  for (int64_t per_rank = 8;; per_rank *= 2) {
    const bool last = per_rank * 2 * P * min_chunk > T;
    const int64_t c = std::max<int64_t>(1, std::min(per_rank, T / (int64_t(P) * min_chunk)));
    auto [rows, most] = place_chunks(T, mask, P, c);
    const double ratio = mean > 0 ? double(most) / mean : 1.0;
    if (best.empty() || ratio < best_ratio) best = std::move(rows), best_ratio = ratio;
    if (best_ratio <= 1.02 || last) return best;
  }
}
}  // namespace

ShardPlan ShardPlan::with_rank(int rank) const {
  LH_CHECK(rank >= 0 && rank < p_, "ShardPlan::with_rank: rank ", rank, " outside [0, ", p_, ")");
  ShardPlan copy = *this;
  copy.rank_ = rank;
  return copy;
}

ShardPlan ShardPlan::for_mask(int64_t T, const Mask& mask, Layout layout, int P, int rank, int64_t min_chunk,
                              std::optional<at::Tensor> cu) {
  LH_CHECK(mask.length() < 0 || mask.length() == T, "ShardPlan::for_mask: the mask is defined on [0, ",
           mask.length(), ") but T = ", T);
  if (cu && mask.has_documents()) {
    const at::Tensor c = cu->to(at::kLong).contiguous();
    LH_CHECK(std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()) == mask.cu_seqlens(),
             "ShardPlan::for_mask: cu_seqlens (", c.numel() - 1, " documents) and the mask's documents (",
             mask.cu_seqlens().size() - 1, ") differ; give the documents once, in the mask or in cu_seqlens");
  }
  if (!cu && mask.has_documents()) cu = at::tensor(mask.cu_seqlens(), at::kLong);
  if (layout != Layout::Balanced) return ShardPlan(T, cu, layout, P, rank, min_chunk);
  ShardPlan plan(T, cu, Layout::Contiguous, P, rank, min_chunk);  // validates T, P, rank, documents
  plan.layout_ = Layout::Balanced;
  plan.set_rows(balanced_rows(T, mask, P, min_chunk));
  return plan;
}

ShardPlan::ShardPlan(int64_t T, std::optional<at::Tensor> cu_seqlens, Layout layout, int P, int rank,
                     int64_t min_chunk)
    : t_(T), p_(P), rank_(rank), layout_(layout) {
  check_layout(layout, "ShardPlan");
  std::vector<std::vector<int64_t>> rows(P);
  LH_CHECK(T >= 0, "ShardPlan: T must be >= 0, got ", T);
  LH_CHECK(P >= 1 && rank >= 0 && rank < P, "ShardPlan: rank ", rank, " outside [0, P = ", P, ")");
  LH_CHECK(min_chunk >= 1, "ShardPlan: min_chunk must be >= 1, got ", min_chunk);
  if (cu_seqlens) {
    const Mask m = Mask::full().documents(*cu_seqlens);  // validates start, order
    cu_ = m.cu_seqlens();
    LH_CHECK(cu_.back() == T, "ShardPlan: cu_seqlens ends at ", cu_.back(), " but T = ", T,
             " (cu_seqlens are global offsets [0, ..., T])");
  } else {
    cu_ = {0, T};
  }
  switch (layout) {
    case Layout::Contiguous:
      for (int r = 0; r < P; ++r) {
        auto [b, e] = part(T, P, r);
        append_range(rows[r], b, e);
      }
      break;
    case Layout::Striped:
      for (int64_t t = 0; t < T; ++t) rows[t % P].push_back(t);
      break;
    case Layout::Balanced:
      throw InvalidArgument("ShardPlan: layout balanced is cut by the mask's area; build it with "
                            "ShardPlan::for_mask(T, mask, Layout::Balanced, P, rank)");
    case Layout::Zigzag: {
      // Work per rank so far (causal cost ∝ length² of what a rank attends within a document).
      std::vector<double> work(P, 0.0);
      const bool single = cu_.size() == 2;
      for (size_t d = 0; d + 1 < cu_.size(); ++d) {
        const int64_t b = cu_[d], len = cu_[d + 1] - cu_[d];
        if (len == 0) continue;
        if (single || len >= 2 * P * min_chunk) {
          for (int r = 0; r < P; ++r) {
            auto [b1, e1] = part(len, 2 * P, r);
            auto [b2, e2] = part(len, 2 * P, 2 * P - 1 - r);
            append_range(rows[r], b + b1, b + e1);
            append_range(rows[r], b + b2, b + e2);
            work[r] += double(len) * len / (2.0 * P);
          }
        } else {  // too short to cut usefully: whole, to the least loaded rank
          const int r = static_cast<int>(std::min_element(work.begin(), work.end()) - work.begin());
          append_range(rows[r], b, b + len);
          work[r] += double(len) * len / 2.0;
        }
      }
      for (auto& r : rows) std::sort(r.begin(), r.end());
      break;
    }
  }
  set_rows(std::move(rows));
}

ShardPlan ShardPlan::from_rows(int64_t T, std::vector<int64_t> cu_seqlens, Layout layout,
                               std::vector<std::vector<int64_t>> rows, int rank) {
  LH_CHECK(T >= 0, "ShardPlan::from_rows: T must be >= 0, got ", T);
  LH_CHECK(!rows.empty() && rank >= 0 && rank < static_cast<int>(rows.size()), "ShardPlan::from_rows: rank ", rank,
           " outside [0, P = ", rows.size(), ")");
  check_layout(layout, "ShardPlan::from_rows");
  ShardPlan p;
  p.t_ = T;
  p.p_ = static_cast<int>(rows.size());
  p.rank_ = rank;
  p.layout_ = layout;
  if (cu_seqlens.empty()) {
    p.cu_ = {0, T};
  } else {
    p.cu_ = Mask::full().documents(cu_seqlens).cu_seqlens();  // validates start and order
    LH_CHECK(p.cu_.back() == T, "ShardPlan::from_rows: cu_seqlens ends at ", p.cu_.back(), " but T = ", T,
             " (cu_seqlens are global offsets [0, ..., T])");
  }
  // Every rank's rows inside [0, T), and together each position exactly once (in any order: a
  // composed strategy's sub-plan lists rows in its own order).
  std::vector<char> seen(static_cast<size_t>(T), 0);
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t i = 0; i < rows[r].size(); ++i) {
      const int64_t t = rows[r][i];
      LH_CHECK(t >= 0 && t < T, "ShardPlan::from_rows: rank ", r, "'s row ", i, " is position ", t,
               ", outside [0, T = ", T, ")");
      LH_CHECK(!seen[t], "ShardPlan::from_rows: position ", t, " is given twice (again to rank ", r,
               "); the rows must partition [0, T = ", T, ")");
      seen[t] = 1;
    }
  const auto missing = std::find(seen.begin(), seen.end(), 0);
  LH_CHECK(missing == seen.end(), "ShardPlan::from_rows: position ", missing - seen.begin(),
           " is on no rank; the rows must partition [0, T = ", T, ")");
  p.set_rows(std::move(rows));
  return p;
}

void ShardPlan::set_rows(std::vector<std::vector<int64_t>> rows) {
  auto table = std::make_shared<PositionTable>();
  table->offset.assign(1, 0);
  for (const auto& r : rows) table->offset.push_back(table->offset.back() + static_cast<int64_t>(r.size()));
  table->all = at::empty({table->offset.back()}, at::kLong);
  int64_t* out = table->all.data_ptr<int64_t>();
  for (const auto& r : rows) out = std::copy(r.begin(), r.end(), out);
  // The rows as runs of consecutive positions, rank by rank: ranks that built their plans
  // differently (another min_chunk, a row table of their own) get different fingerprints.
  Fnv1a h;
  for (const auto& r : rows) {
    h.word(r.size());  // also separates the ranks
    for (size_t i = 0; i < r.size(); ++i)
      if (i == 0 || r[i] != r[i - 1] + 1 || i + 1 == r.size() || r[i + 1] != r[i] + 1) h.word(r[i]);
  }
  table->rows_hash = h.value();
  rows_ = std::make_shared<const std::vector<std::vector<int64_t>>>(std::move(rows));
  table_ = std::move(table);
}

at::Tensor ShardPlan::positions(int rank) const {
  LH_CHECK(rank >= 0 && rank < p_, "ShardPlan::positions: rank ", rank, " outside [0, ", p_, ")");
  return table_->all.narrow(0, table_->offset[rank], table_->offset[rank + 1] - table_->offset[rank]);
}

at::Tensor ShardPlan::doc_positions() const {
  const auto& rows = (*rows_)[rank_];
  at::Tensor out = at::empty({static_cast<int64_t>(rows.size())}, at::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  for (size_t i = 0; i < rows.size(); ++i) {
    auto it = std::upper_bound(cu_.begin(), cu_.end(), rows[i]);
    o[i] = rows[i] - *(it - 1);
  }
  return out;
}

at::Tensor ShardPlan::local_cu_seqlens() const {
  const auto& rows = (*rows_)[rank_];
  std::vector<int64_t> cu{0};
  int64_t prev_doc = -1;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t doc = std::upper_bound(cu_.begin(), cu_.end(), rows[i]) - cu_.begin();
    if (i > 0 && doc != prev_doc) cu.push_back(static_cast<int64_t>(i));
    prev_doc = doc;
  }
  if (!rows.empty()) cu.push_back(static_cast<int64_t>(rows.size()));
  return at::tensor(cu, at::kLong);
}

at::Tensor ShardPlan::shard(const at::Tensor& global) const {
  LH_CHECK(global.dim() >= 1 && global.size(0) == t_, "ShardPlan::shard: expected a [T = ", t_,
           ", ...] tensor, got sizes ", global.sizes());
  return global.index_select(0, positions().to(global.device()));
}

at::Tensor ShardPlan::unshard(const std::vector<at::Tensor>& shards) const {
  LH_CHECK(static_cast<int>(shards.size()) == p_, "ShardPlan::unshard: ", shards.size(), " shards for P = ", p_);
  for (int r = 0; r < p_; ++r) {
    const at::Tensor& x = shards[r];
    LH_CHECK(x.defined() && x.dim() >= 1, "ShardPlan::unshard: the shard of rank ", r, " is ",
             x.defined() ? "a scalar" : "undefined", "; expected [local_rows, ...]");
    LH_CHECK(x.scalar_type() == shards[0].scalar_type() && x.device() == shards[0].device() &&
                 x.sizes().slice(1) == shards[0].sizes().slice(1),
             "ShardPlan::unshard: the shard of rank ", r, " is ", x.scalar_type(), " ", x.sizes(), " on ", x.device(),
             ", rank 0's ", shards[0].scalar_type(), " ", shards[0].sizes(), " on ", shards[0].device(),
             "; every shard needs the same dtype, device and trailing sizes");
  }
  std::vector<int64_t> sizes = shards[0].sizes().vec();
  sizes[0] = t_;
  at::Tensor out = at::empty(sizes, shards[0].options());
  for (int r = 0; r < p_; ++r) {
    LH_CHECK(shards[r].size(0) == local_rows(r), "ShardPlan::unshard: shard of rank ", r, " has ", shards[r].size(0),
             " rows, the plan gives it ", local_rows(r));
    out.index_copy_(0, positions(r).to(out.device()), shards[r]);
  }
  return out;
}

at::Tensor ShardPlan::unshard(const at::Tensor& local, Communicator& comm) const {
  LH_CHECK(comm.size() == p_ && comm.rank() == rank_, "ShardPlan::unshard: the communicator (rank ", comm.rank(),
           " of ", comm.size(), ") is not the plan's group (rank ", rank_, " of ", p_, ")");
  // The gather matches bytes only: ranks whose shards differ in dtype or trailing shape would get
  // a truncated message on one side and garbage on the other.
  LH_CHECK(local.dim() >= 1, "ShardPlan::unshard: the shard must be [local_rows, ...], got a scalar");
  std::vector<AgreedField> fields{AgreedField::of_text("dtype", c10::toString(local.scalar_type())),
                                  {"dimensions", local.dim()},
                                  {"rows as the plan gives this rank (1 yes, 0 no)", local.size(0) == local_rows()}};
  // As many fields on every rank: dimensions 1..7 (-1 where a shard has fewer), the rest folded.
  uint64_t rest = 0;
  for (int64_t d = 8; d < local.dim(); ++d) rest = rest * 1000003u + static_cast<uint64_t>(local.size(d));
  for (int64_t d = 1; d < 8; ++d)
    fields.push_back({detail::str_cat("size of dimension ", d), d < local.dim() ? local.size(d) : -1});
  fields.push_back({"sizes past dimension 7 (folded)", static_cast<int64_t>(rest >> 1)});
  check_ranks_agree(comm, local.device(), fields, "ShardPlan::unshard",
                    "every rank must pass its shard [local_rows, ...] with the same dtype and trailing sizes");
  LH_CHECK(local.size(0) == local_rows(), "ShardPlan::unshard: this rank's shard has ", local.size(0),
           " rows, the plan gives it ", local_rows());
  std::vector<int64_t> counts(p_);
  for (int r = 0; r < p_; ++r) counts[r] = local_rows(r);
  std::vector<int64_t> sizes = local.sizes().vec();
  sizes[0] = t_;
  at::Tensor gathered = at::empty(sizes, local.options());
  at::Tensor in = local.contiguous();
  comm.all_gather(gathered, in, counts)->wait();
  std::vector<at::Tensor> shards;
  int64_t off = 0;
  for (int r = 0; r < p_; ++r) {
    shards.push_back(gathered.narrow(0, off, counts[r]));
    off += counts[r];
  }
  return unshard(shards);
}

Mask ShardPlan::document_mask() const {
  return cu_.size() > 2 ? Mask::full().documents(cu_) : Mask::full();
}

uint64_t ShardPlan::fingerprint() const {
  Fnv1a h;
  h.word(t_).word(p_).word(static_cast<uint64_t>(layout_));
  for (int64_t c : cu_) h.word(c);
  return h.word(table_->rows_hash).value();
}

std::string ShardPlan::describe() const {
  return detail::str_cat("ShardPlan(T=", t_, ", ", to_string(layout_), ", P=", p_, ", rank ", rank_, ", ",
                         cu_.size() - 1, " documents, ", local_rows(), " local rows)");
}

std::vector<int64_t> ShardPlan::rank_areas(const Mask& mask) const {
  std::vector<int64_t> areas(p_, 0);
  for (int r = 0; r < p_; ++r) {
    const auto& rows = (*rows_)[r];
    for (size_t i = 0, j = 0; i < rows.size(); i = j) {  // runs of consecutive positions
      for (j = i + 1; j < rows.size() && rows[j] == rows[j - 1] + 1;) ++j;
      areas[r] += mask.area(rows[i], rows[j - 1] + 1, 0, t_);
    }
  }
  return areas;
}

double ShardPlan::area_imbalance(const Mask& mask) const {
  const std::vector<int64_t> a = rank_areas(mask);
  const double total = std::accumulate(a.begin(), a.end(), 0.0);
  return total == 0 ? 1.0 : double(*std::max_element(a.begin(), a.end())) * p_ / total;
}

}  // namespace longhaul

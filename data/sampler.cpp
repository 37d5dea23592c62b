#include "data/sampler.h"

#include <algorithm>
#include <numeric>

#include "data/state_text.h"
#include "data/tokens_per_step.h"
#include "core/errors.h"

namespace longhaul::data {

DDSampler::DDSampler(std::shared_ptr<const Decomposition> dd, SamplerOptions o) : dd_(std::move(dd)), opt_(o) {
  LH_CHECK(dd_ != nullptr, "DDSampler: no decomposition given");
  const BucketRange& r = dd_->range();
  LH_CHECK(o.dp_size >= 1 && o.dp_rank >= 0 && o.dp_rank < o.dp_size, "DDSampler: data-parallel rank ", o.dp_rank,
           " outside [0, dp_size = ", o.dp_size, ")");
  LH_CHECK(o.cycles >= 1, "DDSampler: cycles must be >= 1, got ", o.cycles);
  check_tokens_per_step("DDSampler", o.tokens_per_step, o.dp_size, r.max_len(), "2^M");
  LH_CHECK(!dd_->empty(), "DDSampler: the bucket set is empty: none of the ", dd_->num_documents(),
           " documents (", dd_->input_tokens(), " tokens) holds 2^m = ", r.min_len(),
           " tokens; lower the smallest bucket or add data");
  odds_ = curriculum_odds(o.curriculum, n_buckets());
  order_.resize(n_buckets());
  for (int j = 0; j < n_buckets(); ++j) {
    order_[j].resize(dd_->bucket(r.min_log2 + j).size());
    std::iota(order_[j].begin(), order_[j].end(), int64_t(0));
    SplitMix64 g{mix64(o.seed ^ mix64(0x5eed0000u + j))};
    shuffle(order_[j], g);
  }
  rng_.state = mix64(o.seed);
  cursor_.assign(n_buckets(), 0);
  carried_.assign(n_buckets(), {});
}

int64_t DDSampler::part_begin(int j, int cycle) const {
  const int64_t n = static_cast<int64_t>(order_[j].size());
  return n * cycle / opt_.cycles;
}

int64_t DDSampler::pool_size(int j) const {
  return pool_size(j, static_cast<int64_t>(carried_[j].size()), cycle_);
}

int64_t DDSampler::pool_size(int j, int64_t carried, int cycle) const {
  return carried + part_begin(j, cycle + 1) - part_begin(j, cycle);
}

int64_t DDSampler::pool_at(int j, int64_t p) const {
  const int64_t c = static_cast<int64_t>(carried_[j].size());
  return p < c ? carried_[j][p] : order_[j][part_begin(j, cycle_) + p - c];
}

void DDSampler::end_cycle() {
  const int m = dd_->range().min_log2;
  std::vector<std::vector<int64_t>> left(n_buckets());
  for (int j = 0; j < n_buckets(); ++j)
    for (int64_t p = cursor_[j]; p < pool_size(j); ++p) left[j].push_back(pool_at(j, p));
  ++cycle_;
  cursor_.assign(n_buckets(), 0);
  if (cycle_ == opt_.cycles) {  // the epoch is over: what is left is dropped, and counted
    for (int j = 0; j < n_buckets(); ++j) {
      dropped_pieces_ += static_cast<int64_t>(left[j].size());
      dropped_tokens_ += static_cast<int64_t>(left[j].size()) << (m + j);
    }
    carried_.assign(n_buckets(), {});
  } else {
    carried_ = std::move(left);
  }
}

std::optional<StepPlan> DDSampler::next() {
  const int m = dd_->range().min_log2;
  while (cycle_ < opt_.cycles) {
    std::vector<double> w(n_buckets(), 0.0);
    double total = 0;
    uint64_t eligible = 0;
    for (int j = 0; j < n_buckets(); ++j) {
      const int64_t k = batch_pieces(m + j), left = pool_size(j) - cursor_[j];
      if (left < k) continue;
      eligible |= uint64_t(1) << j;
      w[j] = odds_.empty() ? double(left / k) : odds_[j];
      total += w[j];
    }
    if (eligible == 0) {
      end_cycle();
      continue;
    }
    // One draw per step, identical on every rank.
    double u = rng_.uniform() * total;
    int pick = -1;
    for (int j = 0; j < n_buckets(); ++j) {
      if (!(eligible >> j & 1)) continue;
      pick = j;
      if (u < w[j]) break;
      u -= w[j];
    }
    const int log2_len = m + pick;
    const int64_t k = batch_pieces(log2_len), per_rank = k / opt_.dp_size;
    StepPlan plan;
    plan.step = step_;
    plan.cycle = cycle_;
    plan.bucket = log2_len;
    plan.seq_len = int64_t(1) << log2_len;
    plan.eligible = eligible;
    const auto& pieces = dd_->bucket(log2_len);
    const int64_t first = cursor_[pick] + per_rank * opt_.dp_rank;
    for (int64_t p = first; p < first + per_rank; ++p) plan.sequences.push_back({pieces[pool_at(pick, p)].start, plan.seq_len});
    cursor_[pick] += k;
    ++step_;
    return plan;
  }
  return std::nullopt;
}

int64_t DDSampler::steps_per_epoch() const {
  int64_t s = 0;
  for (int i = dd_->range().min_log2; i <= dd_->range().max_log2; ++i) s += dd_->bucket_size(i) / batch_pieces(i);
  return s;
}

int64_t DDSampler::leftover_pieces() const {
  int64_t s = 0;
  for (int i = dd_->range().min_log2; i <= dd_->range().max_log2; ++i) s += dd_->bucket_size(i) % batch_pieces(i);
  return s;
}

int64_t DDSampler::leftover_tokens() const {
  int64_t s = 0;
  for (int i = dd_->range().min_log2; i <= dd_->range().max_log2; ++i)
    s += (dd_->bucket_size(i) % batch_pieces(i)) << i;
  return s;
}

uint64_t DDSampler::fingerprint() const {
  uint64_t h = dd_->fingerprint();
  for (uint64_t v : {uint64_t(opt_.tokens_per_step), uint64_t(opt_.dp_size), uint64_t(opt_.curriculum),
                     uint64_t(opt_.cycles), opt_.seed})
    h = mix64(h ^ v);
  return h;
}

NamedOptions DDSampler::named_options() const {
  return {{"tokens_per_step", opt_.tokens_per_step}, {"dp_size", opt_.dp_size},
          {"curriculum", static_cast<int64_t>(opt_.curriculum)}, {"cycles", opt_.cycles},
          {"seed", static_cast<int64_t>(opt_.seed)}};
}

// The state is the same on every rank (dp_rank is not part of it): save on one, restore on all.
std::string DDSampler::save_state() const {
  StateWriter w("dd-sampler");
  w.put("fingerprint", static_cast<int64_t>(fingerprint()))
      .put_options(named_options())
      .put("cycle", cycle_)
      .put("step", step_)
      .put("rng", static_cast<int64_t>(rng_.state))
      .put("cursor", cursor_)
      .put("dropped", std::vector<int64_t>{dropped_pieces_, dropped_tokens_});
  for (int j = 0; j < n_buckets(); ++j) w.put("carried" + std::to_string(j), carried_[j]);
  return w.str();
}

void DDSampler::restore_state(const std::string& text) {
  StateReader r(text, "dd-sampler");
  r.expect_options("DDSampler", named_options(), [](const std::string& name, int64_t v) {
    return name == "curriculum" ? std::string(to_string(static_cast<Curriculum>(v))) : std::to_string(v);
  });
  LH_CHECK(static_cast<uint64_t>(r.get("fingerprint")) == fingerprint(),
           "DDSampler: the saved state belongs to another data set or bucket range (same options: tokens per step, "
           "data-parallel size, curriculum, cycles, seed); expected this sampler's");
  const int cycle = static_cast<int>(r.get("cycle"));
  LH_CHECK(cycle >= 0 && cycle <= opt_.cycles, "DDSampler: saved cycle ", cycle, " outside [0, ", opt_.cycles, "]");
  const auto& cursor = r.list("cursor");
  const auto& dropped = r.list("dropped");
  LH_CHECK(static_cast<int>(cursor.size()) == n_buckets() && dropped.size() == 2,
           "DDSampler: saved state has ", cursor.size(), " bucket cursors, expected ", n_buckets());
  std::vector<std::vector<int64_t>> carried(n_buckets());
  for (int j = 0; j < n_buckets(); ++j) {
    carried[j] = r.list("carried" + std::to_string(j));
    for (int64_t p : carried[j])
      LH_CHECK(p >= 0 && p < static_cast<int64_t>(order_[j].size()), "DDSampler: saved state carries piece ", p,
               " of bucket ", j, ", which has ", order_[j].size());
  }
  const int64_t step = r.get("step");
  LH_CHECK(step >= 0, "DDSampler: saved step ", step, " is negative");
  LH_CHECK(dropped[0] >= 0 && dropped[1] >= 0, "DDSampler: saved dropped pieces/tokens ", dropped[0], "/", dropped[1],
           " are negative");
  if (cycle < opt_.cycles)
    for (int j = 0; j < n_buckets(); ++j)
      LH_CHECK(cursor[j] >= 0 && cursor[j] <= pool_size(j, std::ssize(carried[j]), cycle), "DDSampler: saved cursor ",
               cursor[j], " of bucket ", j, " outside its pool of ", pool_size(j, std::ssize(carried[j]), cycle),
               " pieces");
  // Checked in full first: a state refused leaves the sampler as it was.
  cycle_ = cycle;
  step_ = step;
  rng_.state = static_cast<uint64_t>(r.get("rng"));
  cursor_ = cursor;
  carried_ = std::move(carried);
  dropped_pieces_ = dropped[0];
  dropped_tokens_ = dropped[1];
}

}  // namespace longhaul::data

#include "parallel/step_group.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <tuple>

#include "core/errors.h"

namespace longhaul {

StepGroup::~StepGroup() {
  if (!work_) return;
  try {
    work_->wait();
  } catch (...) {
  }
}

void StepGroup::add(P2POp op) {
  LH_CHECK(!posted_, "StepGroup: an operation was added after the group was posted");
  for (const auto& o : ops_)
    LH_CHECK(o.kind != op.kind || o.peer != op.peer || o.tag != op.tag, "StepGroup: two ",
             op.kind == P2POp::Kind::Send ? "sends to" : "receives from", " rank ", op.peer, " with tag ", op.tag,
             " in one step: their order would be ambiguous under NCCL");
  ops_.push_back(std::move(op));
}

void StepGroup::send(const at::Tensor& t, int peer, Tag tag) {
  add(P2POp::send(t, peer, tag_value(tag)));
  *bytes_ += Tracked::bytes_of(t);
}

void StepGroup::send_temporary(const at::Tensor& t, int peer, Tag tag) {
  send(t, peer, tag);
  held_.emplace_back(*stats_, t);
}

Tracked StepGroup::recv(at::IntArrayRef sizes, const at::TensorOptions& options, int peer, Tag tag) {
  Tracked buf(*stats_, at::empty(sizes, options));
  add(P2POp::recv(*buf, peer, tag_value(tag)));
  return buf;
}

void StepGroup::post() {
  LH_CHECK(!posted_, "StepGroup: posted twice");
  posted_ = true;
  if (ops_.empty()) return;
  // The canonical order: by tag, sends before receives, then by peer.
  std::stable_sort(ops_.begin(), ops_.end(), [](const P2POp& a, const P2POp& b) {
    return std::make_tuple(a.tag, a.kind != P2POp::Kind::Send, a.peer) <
           std::make_tuple(b.tag, b.kind != P2POp::Kind::Send, b.peer);
  });
  work_ = comm_->exchange(ops_);
}

void StepGroup::wait() {
  if (work_) {
    WorkPtr w = std::move(work_);
    work_.reset();
    w->wait();
  }
  ops_.clear();
  held_.clear();
}

}  // namespace longhaul

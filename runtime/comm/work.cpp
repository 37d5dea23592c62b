#include "runtime/comm/work.h"

#include <algorithm>

#include <iomanip>
#include <sstream>

#include "core/errors.h"

namespace longhaul {

namespace {
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
std::string fmt_seconds(double s) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << s << " s";
  return os.str();
}
thread_local double t_wait_seconds = 0;
thread_local int t_wait_depth = 0;

// Adds the time an outermost blocking wait took to this thread's total.
struct WaitTimer {
  bool outermost = t_wait_depth++ == 0;
  Clock::time_point begin = Clock::now();
  ~WaitTimer() {
    --t_wait_depth;
    if (outermost) t_wait_seconds += seconds_since(begin);
  }
};
}  // namespace

double comm_wait_seconds() { return t_wait_seconds; }

Work::Work(std::string what, std::chrono::milliseconds timeout, int parts)
    : what_(std::move(what)), start_(Clock::now()), timeout_(std::min(timeout, kLongestTimeout)), parts_left_(parts) {}

std::shared_ptr<Work> Work::completed(std::string what) {
  return std::make_shared<Work>(std::move(what), std::chrono::milliseconds(0), 0);
}

void Work::complete_part() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --parts_left_;
  }
  cv_.notify_all();
}

void Work::fail(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = reason;
    parts_left_ = 0;
  }
  cv_.notify_all();
}

void Work::wait() {
  WaitTimer timer;
  for (auto& child : children_) child->wait();
  bool pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending = parts_left_ > 0;
  }
  struct Waiting {  // tells the backend a caller blocks here (outside the lock)
    Work* w;
    bool active;
    ~Waiting() {
      if (active) w->waiting(false);
    }
  } guard{this, pending};
  if (pending) waiting(true);
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_until(lock, deadline(), [&] { return parts_left_ <= 0; })) {
      throw TimeoutError(detail::str_cat(what_, " did not complete within ", fmt_seconds(timeout_.count() / 1e3),
                                         " (elapsed ", fmt_seconds(seconds_since(start_.load())),
                                         "): the peer may be stopped, dead or not calling the matching operation"));
    }
    if (!error_.empty()) throw CommError(detail::str_cat(what_, " failed: ", error_));
  }
  run_finish();
}

bool Work::done() {
  poll();
  for (auto& child : children_)
    if (!child->done()) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (parts_left_ > 0) return false;
    if (!error_.empty()) throw CommError(detail::str_cat(what_, " failed: ", error_));
  }
  run_finish();
  return true;
}

void Work::then(std::function<void()> f) {
  if (!finish_) {
    finish_ = std::move(f);
    return;
  }
  finish_ = [first = std::move(finish_), second = std::move(f)] {
    first();
    second();
  };
}

void Work::run_finish() {
  // Only the owning (waiting) thread runs the finish step, so no lock is needed beyond the flag.
  // A step that throws is not marked done: a later wait() runs it again and reports it again.
  if (finished_) return;
  if (finish_) finish_();
  finished_ = true;
}

void wait_all(const std::vector<WorkPtr>& works) {
  std::exception_ptr first;
  for (const auto& w : works) {
    try {
      if (w) w->wait();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace longhaul

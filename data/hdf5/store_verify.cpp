#include "data/hdf5/store_verify.h"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <vector>

#include "core/data_limit.h"
#include "core/errors.h"
#include "data/hdf5/store_reader.h"

namespace longhaul::data {
namespace {

constexpr int kExitRefused = 3;  // the reader threw: its message is on the pipe

void write_all(int fd, const std::string& text) {
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

// The child: read the whole store as the parent will, and every token once.
[[noreturn]] void child_main(const std::string& path, int out_fd, int64_t budget) {
  // A crash here ends this child by its signal: none of the parent's crash handlers (Python's
  // faulthandler, a fuzzer's) runs and reports it as the parent's own.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, SIG_DFL);
  // What it inherited stays usable; past the budget allocations fail, in HDF5 as in ours.
  const int64_t have = budget > 0 ? data_segment_bytes() : -1;
  if (have >= 0) {
    const rlimit limit{rlim_t(have + budget), rlim_t(have + budget)};
    ::setrlimit(RLIMIT_DATA, &limit);
  }
  try {
    StoreReaderOptions direct;
    direct.verify = StoreVerify::Never;  // this child is the verification
    TokenStoreReader reader(path, direct);
    const int64_t n = reader.num_tokens(), step = int64_t(1) << 20;
    std::vector<int32_t> buf(static_cast<size_t>(std::min(n, step)));
    for (int64_t begin = 0; begin < n; begin += step) {
      const int64_t count = std::min(step, n - begin);
      reader.read(begin, count, buf.data());
      for (int64_t i = 0; i < count; ++i)
        LH_CHECK(buf[i] >= 0 && buf[i] < reader.vocab_size(), "token store '", path, "': token ", begin + i, " is ",
                 buf[i], ", outside [0, vocab_size = ", reader.vocab_size(), ")");
    }
    ::_exit(0);
  } catch (const std::bad_alloc&) {
    write_all(out_fd, detail::str_cat("token store '", path, "': reading it in a child process needed more than its ",
                                      "memory budget of ", budget >> 20, " MiB (a corrupt structure; ",
                                      "StoreVerifyOptions::memory_budget_bytes sets the budget)"));
  } catch (const std::exception& e) {
    write_all(out_fd, e.what());
  } catch (...) {
    write_all(out_fd, "token store '" + path + "': an unknown exception while reading it");
  }
  ::_exit(kExitRefused);  // never run the parent's exit handlers (MPI, torch) in the child
}

}  // namespace

void verify_store_in_child(const std::string& path, StoreVerifyOptions options) {
  const std::string ctx = "token store '" + path + "'";
  int fds[2];
  LH_CHECK(::pipe(fds) == 0, ctx, ": cannot create a pipe to verify it (", std::strerror(errno), ")");
  const pid_t child = ::fork();
  if (child < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(ctx + ": cannot fork a process to verify it (" + std::strerror(err) + ")");
  }
  if (child == 0) {
    ::close(fds[0]);
    child_main(path, fds[1], options.memory_budget_bytes);
  }
  ::close(fds[1]);

  // The child's message, until it closes the pipe (exit or crash) or the deadline passes.
  std::string message;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(options.deadline_s);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child is gone or about to be
    message.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(child, SIGKILL);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out)
    throw InvalidArgument(detail::str_cat(ctx, ": reading it did not finish within ", options.deadline_s,
                                          " s (HDF5 looping on a corrupt structure, or a larger deadline is needed)"));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitRefused && !message.empty()) throw InvalidArgument(message);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    throw InvalidArgument(detail::str_cat(ctx, ": the HDF5 library crashed reading it in a child process (signal ",
                                          sig, ", ", ::strsignal(sig), "); the file is corrupt or was not written by "
                                          "`longhaul prep`"));
  }
  throw InvalidArgument(detail::str_cat(ctx, ": the HDF5 library failed reading it in a child process (exit status ",
                                        WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                                        "; a memory checker's report, if any, is above); the file is corrupt or was "
                                        "not written by `longhaul prep`"));
}

}  // namespace longhaul::data

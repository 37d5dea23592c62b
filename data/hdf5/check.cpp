#include "data/hdf5/check.h"

namespace longhaul::data::h5 {
namespace {
// HDF5 before 1.14.1 frees a file whose close failed (a full disk: its last flush refused) but
// keeps its ID, and its exit handler then closes that ID again and crashes (HDFFV-11052). Every
// HDF5 object longhaul opens closes itself (Handle), so the handler has nothing left to do; it is
// not installed. H5dont_atexit works only before the library initialises, hence at load.
[[maybe_unused]] const herr_t no_exit_handler = H5dont_atexit();
}  // namespace

void quiet() {
  thread_local bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

namespace {
herr_t collect(unsigned n, const H5E_error2_t* e, void* data) {
  auto& out = *static_cast<std::string*>(data);
  if (n >= 4) return 0;  // the innermost few say what went wrong; the rest is the call chain
  if (!out.empty()) out += "; ";
  std::string desc = e->desc ? e->desc : "?";
  for (char& c : desc)  // one line: the POSIX driver's write errors hold a newline (after ctime's date)
    if (c == '\n') c = ' ';
  out += std::string(e->func_name ? e->func_name : "?") + ": " + desc;
  return 0;
}
}  // namespace

std::string error_stack() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect, &out);
  return out.empty() ? "no HDF5 error message" : out;
}

void fail(const char* call, const std::string& context, const char* file, int line) {
  const std::string stack = error_stack();
  H5Eclear2(H5E_DEFAULT);
  throw Error(context + ": " + call + " failed (HDF5: " + stack + ") (" + file + ":" + std::to_string(line) + ")");
}

}  // namespace longhaul::data::h5

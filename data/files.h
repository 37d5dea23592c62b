// File-system helpers on POSIX calls. Not std::filesystem: the torch wheel's libtorch.so exports
// broken std::filesystem symbols that win symbol resolution in any process that loads it (the
// `longhaul` tool does), and e.g. remove_all then jumps to address 0.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace longhaul::data::files {

bool exists(const std::string& path);
bool is_directory(const std::string& path);     // follows symlinks
bool is_regular_file(const std::string& path);  // follows symlinks
int64_t file_size(const std::string& path);     // -1 when it cannot be read
std::string join(const std::string& dir, const std::string& name);
std::string file_name(const std::string& path);  // the part after the last '/'
std::string parent_dir(const std::string& path);  // the part before the last '/' ("." for none)
bool same_file(const std::string& a, const std::string& b);  // one file (device and inode), both existing
// A file about to be written at `path` (`what` names it in the error, e.g. "prep: the output";
// `hint` ends it, e.g. " (--checkpoint)"): InvalidArgument when path is a directory, its directory
// is missing, a file or not writable, or the file cannot be opened for writing there (the file
// system's reason), so that a bad path is found before the work, not after it. An existing file is
// left as it was.
void check_writable_file(const std::string& path, const std::string& what, const std::string& hint = "");

// Visits dir recursively in sorted name order. For each entry: visit(path, name, kind, error)
// with kind 'd' (directory: return false to skip it), 'f' (regular file or a link to one), 'o'
// (anything else, broken links included) or 'e' (unreadable; error says why). Symlinks to
// directories are not followed (no cycles).
void walk(const std::string& dir,
          const std::function<bool(const std::string& path, const std::string& name, char kind, const std::string& error)>& visit);

// Returns 0 or errno.
int rename(const std::string& from, const std::string& to);
int remove(const std::string& path);      // a file
int remove_tree(const std::string& path);  // a directory and everything below it
std::string make_temp_dir(const std::string& prefix);  // under $TMPDIR or /tmp; throws on failure
void create_directories(const std::string& path);      // throws on failure

}  // namespace longhaul::data::files

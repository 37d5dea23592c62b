#include "data/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/errors.h"

namespace longhaul::data::files {

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

bool is_directory(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_regular_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t file_size(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string file_name(const std::string& path) {
  const size_t s = path.find_last_of('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

std::string parent_dir(const std::string& path) {
  const size_t s = path.find_last_of('/');
  if (s == std::string::npos) return ".";
  return s == 0 ? "/" : path.substr(0, s);
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat x, y;
  return ::stat(a.c_str(), &x) == 0 && ::stat(b.c_str(), &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

void check_writable_file(const std::string& path, const std::string& what, const std::string& hint) {
  LH_CHECK(!is_directory(path), what, " ", path, " is a directory, expected a file name", hint);
  const std::string dir = parent_dir(path);
  struct stat st;
  LH_CHECK(::stat(dir.c_str(), &st) == 0, what, "'s directory ", dir, " does not exist", hint);
  LH_CHECK(S_ISDIR(st.st_mode), what, "'s directory ", dir, " is not a directory (it is a file)", hint);
  LH_CHECK(::access(dir.c_str(), W_OK) == 0, what, "'s directory ", dir, " is not writable", hint);
  // The file system has the last word (/proc, a read-only mount, a full quota): open the file as
  // the writer will, without truncating it, or, when it is not there yet, a probe of another name
  // beside it (the path itself never appears: a job watching it for a checkpoint would be fooled).
  const bool existed = ::access(path.c_str(), F_OK) == 0;
  const std::string probe = existed ? path : path + ".probe." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), existed ? O_WRONLY : O_WRONLY | O_CREAT | O_EXCL, 0644);
  LH_CHECK(fd >= 0, what, " ", path, " cannot be ", existed ? "written" : "created", ": ", std::strerror(errno), hint);
  ::close(fd);
  if (!existed) ::unlink(probe.c_str());
}

void walk(const std::string& dir,
          const std::function<bool(const std::string&, const std::string&, char, const std::string&)>& visit) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    visit(dir, file_name(dir), 'e', std::strerror(errno));
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string p = join(dir, name);
    struct stat lst, st;
    if (::lstat(p.c_str(), &lst) != 0) {
      visit(p, name, 'e', std::strerror(errno));
      continue;
    }
    if (S_ISDIR(lst.st_mode)) {
      if (visit(p, name, 'd', "")) walk(p, visit);
    } else if (S_ISREG(lst.st_mode) || (S_ISLNK(lst.st_mode) && ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode))) {
      visit(p, name, 'f', "");
    } else {
      visit(p, name, 'o', "");
    }
  }
}

int rename(const std::string& from, const std::string& to) { return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno; }

int remove(const std::string& p) { return ::unlink(p.c_str()) == 0 ? 0 : errno; }

int remove_tree(const std::string& p) {
  auto rm = [](const char* path, const struct stat*, int, FTW*) { return ::remove(path); };
  return ::nftw(p.c_str(), rm, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : errno;
}

std::string make_temp_dir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string t = join(tmp && *tmp ? tmp : "/tmp", prefix + "XXXXXX");
  if (!::mkdtemp(t.data())) throw Error("cannot create a temporary directory " + t + ": " + std::strerror(errno));
  return t;
}

void create_directories(const std::string& path) {
  std::string at;
  size_t i = 0;
  while (i <= path.size()) {
    const size_t j = path.find('/', i);
    at = path.substr(0, j == std::string::npos ? path.size() : j);
    if (!at.empty() && !is_directory(at) && ::mkdir(at.c_str(), 0777) != 0 && errno != EEXIST)
      throw Error("cannot create directory '" + at + "': " + std::strerror(errno));
    if (j == std::string::npos) break;
    i = j + 1;
  }
}

}  // namespace longhaul::data::files

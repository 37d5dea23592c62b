// Stamps of token stores this machine has verified (or written with `longhaul prep`), so the
// default verification (StoreVerify::Once) costs one child read per file, not one per open.
//
// A stamp is a small file in the verified-stores cache ($LONGHAUL_CACHE_DIR, else
// $XDG_CACHE_HOME/longhaul, else ~/.cache/longhaul; then /verified-stores), named by the store's
// absolute path, holding its device, inode, size and modification time in nanoseconds. Any change
// to the file (rewritten, replaced, touched) makes the stamp stale and the next open verifies
// again. It guards against crafted or corrupt files arriving, not against someone who can both
// rewrite the file and forge its timestamps on this machine.
#pragma once

#include <string>

namespace longhaul::data {

// Whether `path` carries a stamp matching the file as it is now.
bool store_stamp_matches(const std::string& path);
// Records the file as it is now. Best effort: an unwritable cache only means the next open
// verifies again; never throws.
void stamp_store(const std::string& path);
// The folder stamps go to (not created).
std::string store_stamp_dir();

}  // namespace longhaul::data

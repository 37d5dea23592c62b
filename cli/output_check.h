// Standard output that cannot be written (a full disk, a file system gone) is said, never lost in
// silence: a run that logs to a file keeps running (its checkpoint matters more than its log), says
// at the first failure which line was lost and why, and exits with status 1 at the end, as
// coreutils' tools do.
#pragma once

#include <string>

namespace longhaul::cli {

// Flushes std::cout and stdout. The first failure prints one line on stderr naming the error and
// `where` ("the line of step 120"); returns false while output fails.
bool flush_stdout(const std::string& where);

// At the command's end: flushes; if output failed at any time, says so and turns a status of 0
// into 1 (a failed command keeps its own).
int checked_exit(const std::string& command, int rc);

}  // namespace longhaul::cli

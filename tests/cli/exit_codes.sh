#!/usr/bin/env bash
# The tool's exit codes follow the kind of error (docs/errors.md), and messages are one line
# (no C++ backtrace): 0 success, 2 bad input (unknown option, invalid value), 2 for an unknown
# command (usage).
set -u
longhaul=$1
fail=0
expect() {  # expect CODE ARGS...: runs longhaul ARGS, checks the exit code and a one-line error
  local want=$1
  shift
  local err
  err=$("$longhaul" "$@" 2>&1 >/dev/null)
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: longhaul $* exited $rc, expected $want; stderr: $err"
    fail=1
  fi
  if echo "$err" | grep -q "frame #"; then
    echo "FAIL: longhaul $* printed a C++ backtrace: $err"
    fail=1
  fi
}
expect 0 plan --tokens 4096 --ranks 2 --heads 4 --kv-heads 4 --head-dim 32 --gflops 50 --memory-gbps 5
expect 2 plan --no-such-option
expect 2 plan --tokens 4096 --ranks 2 --mask documents --gflops 50
expect 2 plan --tokens 4096 --ranks 2 --dtype int3 --gflops 50
expect 2 frobnicate
# A store on which libhdf5 itself crashes, opened with --verify-data: a named bad-input error (2)
# from the verifying child's crash, not a segfault of the trainer.
crash=$(cd "$(dirname "$0")/../fuzz/hdf5_crashes" && pwd)/hdf5_crash_sigsegv
expect 2 train --data "$crash" --verify-data --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
# The same by default (stores are verified once per file; a crashing one is never stamped).
expect 2 train --data "$crash" --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
expect 2 train --data "$crash" --verify-data --no-verify-data --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
if ! "$longhaul" train --data "$crash" --verify-data --steps 1 --workdir "${TMPDIR:-/tmp}/longhaul_exit_codes_$$" 2>&1 |
  grep -q "the HDF5 library crashed reading it in a child process"; then
  echo "FAIL: train --verify-data on a crashing store did not name the crash"
  fail=1
fi
rm -rf "${TMPDIR:-/tmp}/longhaul_exit_codes_$$"
[ $fail -eq 0 ] && echo "exit codes: ok"
exit $fail

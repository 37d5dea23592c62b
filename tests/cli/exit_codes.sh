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
[ $fail -eq 0 ] && echo "exit codes: ok"
exit $fail

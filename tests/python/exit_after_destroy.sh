#!/usr/bin/env bash
# Runs exit_after_destroy.py under torchrun (2 ranks) RUNS times in MODE (wrapped, the default, or
# world); every run must exit 0.
# Usage: exit_after_destroy.sh PYTHON RUNS [MODE]
set -u
python=$1
runs=$2
mode=${3:-wrapped}
here=$(cd "$(dirname "$0")" && pwd)
for run in $(seq 1 "$runs"); do
  # A static store on a free port, as torchrun without --standalone (the teardown race shows more
  # often there: 8 of 12 runs without the fix, against 1 of 6 with --standalone).
  port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  if ! "$python" -m torch.distributed.run --nproc-per-node 2 --master-addr 127.0.0.1 --master-port "$port" \
      "$here/exit_after_destroy.py" "$mode"; then
    echo "FAIL: run $run of $runs did not exit cleanly"
    exit 1
  fi
done
echo "all $runs runs ($mode) exited cleanly"

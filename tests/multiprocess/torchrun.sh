#!/usr/bin/env bash
# Runs a binary under torchrun (python3 -m torch.distributed.run) on N local ranks, with the
# store on a free port of the loopback. Usage: torchrun.sh N binary [args...]
set -euo pipefail
n=$1
shift
python=${LONGHAUL_PYTHON:-python3}
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$python" -m torch.distributed.run --nproc-per-node "$n" --master-addr 127.0.0.1 --master-port "$port" \
  --no-python "$@"

#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, prints `longhaul info`, then trains
# the embedded default — a transformer on the built-in long-range recall task (train/task.h) — on
# 2 MPI ranks forming one context-parallel group (CP=2) for a few minutes on a 2-core machine. It
# prints the loss falling (a line every 50 steps, retrieval accuracy every 250) and ends with the
# accuracy table by context length. LONGHAUL_TRAIN_STEPS (default 2500, about 4–5 minutes here)
# bounds the run; extra arguments go to `longhaul train` (e.g. --strategy ulysses).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
BUILD_TARGETS=longhaul "$root/scripts/build.sh"  # the tool and its libraries, not the tests
bin="${BUILD_DIR:-$root/build}/cli/longhaul"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$bin" info
workdir=${LONGHAUL_TRAIN_DIR:-$(mktemp -d /tmp/longhaul-train.XXXXXX)}
# Documents of 64…256 tokens with one hidden key-value pair each (a passkey): a 2-layer model of
# width 64 learns to retrieve it within the run; the loss falls from ~4.2 within the first minute.
mpirun --oversubscribe --bind-to none -np 2 "$bin" train --cp 2 --strategy ring --layout zigzag \
  --steps "${LONGHAUL_TRAIN_STEPS:-2500}" --min-log2 6 --max-log2 8 --task-pairs 1 --lr 2e-3 --log-every 50 --eval-every 250 \
  --workdir "$workdir" "$@"

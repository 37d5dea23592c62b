#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, prints `longhaul info`, then trains
# the embedded default — a transformer on the built-in long-range recall task (train/task.h) — on
# 2 MPI ranks with `--cp auto` (the planner gives each DD bucket, 16…4096 tokens, its CP degree and
# prints the table first: the 4096-token documents, one per step, are split over both ranks) for
# five to six minutes on a 2-core machine. It prints the
# loss falling (a line every 100 steps with the step's CP degree, retrieval accuracy every 500) and
# ends with the accuracy table by context length (chance 1/16). LONGHAUL_TRAIN_STEPS (default
# 6000) bounds the run; extra arguments go to `longhaul train` and replace the defaults below that
# they name (e.g. --cp 2 --strategy ulysses). LONGHAUL_NO_BUILD=1 skips the setup and the
# build and runs the tool already built in ${BUILD_DIR:-build}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${LONGHAUL_NO_BUILD:-0}" != 1 ]; then
  "$root/scripts/setup.sh"
  BUILD_TARGETS=longhaul "$root/scripts/build.sh"  # the tool and its libraries, not the tests
fi
bin="${BUILD_DIR:-$root/build}/cli/longhaul"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$bin" info
# Documents of 16…4096 tokens with one hidden key-value pair each (a passkey), for a 2-layer model
# of width 64 with 2 heads of 32 dims, DD in four cycles with the natural curriculum (each cycle's
# batches in one uniform shuffle, so every length comes from the first step of a cycle to its
# last). A short-first curriculum (grow_p2) found the retrieval earlier on the 16-token documents,
# but the end of each cycle held only long documents and the shortest drifted there; with natural
# no length falls back once it is learned. The rotary base 500000 keeps a head's slowest pairs
# nearly still across 4096 positions, so a match found on short documents holds on the longest.
# Why, and every recipe measured: docs/train.md, The embedded task.
# Each default is a flag and its value; one the extra arguments name is left to them (the tool
# refuses an option given twice). The work directory is made only when none is given.
named() { local flag=$1 a; shift; for a in "$@"; do [[ $a == "$flag" || $a == "$flag="* ]] && return 0; done; return 1; }
defaults=(--cp auto --strategy ring --layout zigzag --steps "${LONGHAUL_TRAIN_STEPS:-6000}" --min-log2 4 --max-log2 12
          --tokens-per-step 4096 --task-pairs 1 --lr 3e-3 --heads 2 --kv-heads 2 --rope-theta 500000 --cycles 4
          --curriculum natural --log-every 100 --eval-every 500)
args=()
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  named "${defaults[i]}" "$@" || args+=("${defaults[i]}" "${defaults[i + 1]}")
done
named --workdir "$@" || args+=(--workdir "${LONGHAUL_TRAIN_DIR:-$(mktemp -d /tmp/longhaul-train.XXXXXX)}")
mpirun --oversubscribe --bind-to none -np 2 "$bin" train "${args[@]}" "$@"

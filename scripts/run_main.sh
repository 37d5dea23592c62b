#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, prints `longhaul info` and runs
# the communication benchmark on 2 MPI ranks (the embedded default: no data, no cluster).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
bin="${BUILD_DIR:-$root/build}/launch/longhaul"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$bin" info
mpirun --oversubscribe --bind-to none -np 2 "$bin" bench comm "$@"

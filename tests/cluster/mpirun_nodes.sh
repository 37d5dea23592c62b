#!/usr/bin/env bash
# mpirun across two "nodes" of scripts/cluster.sh (network namespaces on a bridge, TCP between
# them, shared memory within each), two ranks per node.
#   mpirun_nodes.sh MODE LONGHAUL WORKDIR MPI_TESTS
#   info   every rank's host and local rank: node1: 0 1 | node2: 2 3, consistent
#   train  `longhaul train --cp 2` across the nodes equals the same four ranks on one node, bitwise
#   cp     the CP suite (MpiCp.*) across the nodes
#   bench  `bench comm` (collectives, its overlap row included) and `bench cp` across the nodes
# Exits 77 (skipped, reason printed) where network namespaces cannot be made.
set -euo pipefail
mode=$1 bin=$2 work=$3 mpi_tests=${4:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
export LONGHAUL_CLUSTER_PREFIX=lhc LONGHAUL_CLUSTER_NET=10.78.0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
source "$root/tests/cluster/common.sh"
require_netns
cluster_start 2
rm -rf "$work" && mkdir -p "$work"
# shellcheck disable=SC2207
across=(mpirun $("$cluster" mpirun-args) -H "$LONGHAUL_CLUSTER_NET.1:2,$LONGHAUL_CLUSTER_NET.2:2" -np 4 --bind-to none)
on_node1() { timeout --signal=KILL 600 "$cluster" exec node1 "$@"; }

case "$mode" in
  info)
    on_node1 "${across[@]}" "$bin" info --json > "$work/info.json"
    python3 - "$work/info.json" <<'PY' || fail "placement across the nodes"
import json, sys
row = json.loads(open(sys.argv[1]).read())
print(row["placement"], "|", row["placement_check"])
assert row["world_size"] == 4, row
assert row["placement"] == "node1: 0 1 | node2: 2 3", row["placement"]
assert row["placement_check"] == "ok", row["placement_check"]
PY
    ;;
  train)
    on_node1 "${across[@]}" "$bin" "${train_args[@]}" --workdir "$work/nodes" > "$work/nodes.json"
    on_node1 mpirun --bind-to none --oversubscribe -np 4 "$bin" "${train_args[@]}" --workdir "$work/one" > "$work/one.json"
    same_losses "$work/nodes.json" "$work/one.json" "train across the nodes"
    echo "train across 2 nodes x 2 ranks: 4 losses equal to one node, bitwise"
    ;;
  cp)
    on_node1 "${across[@]}" "$mpi_tests" --gtest_filter='MpiCp.*' ;;
  bench)
    # One rank per node with one thread: the nodes share this machine's cores, so a rank that
    # took every core would starve the other node's. The overlap row must show the transfer
    # progressing over TCP while the caller computes (little left at wait()); its time ratios
    # depend on the cores the two nodes share here, so they are printed, not asserted.
    pair=(mpirun $("$cluster" mpirun-args) -H "$LONGHAUL_CLUSTER_NET.1:1,$LONGHAUL_CLUSTER_NET.2:1" -np 2 --bind-to none)
    on_node1 "${pair[@]}" "$bin" bench comm --threads 1 --max-bytes 4194304 --overlap-bytes 33554432 --iters 3 \
      --json > "$work/comm.json" || true  # the row's own pass flag is printed, not asserted (above)
    python3 - "$work/comm.json" <<'PY' || { cat "$work/comm.json"; fail "bench comm across the nodes"; }
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert rows and all(r["wrong"] == 0 for r in rows), "wrong data"
ov = [r for r in rows if r["op"] == "overlap"]
assert len(ov) == 1, "no overlap row"
o = ov[0]
print(f"overlap across nodes: exchange {o['exchange_ms']:.1f} ms, GEMM {o['gemm_ms']:.1f} ms, "
      f"left at wait {o['wait_ms']:.3f} ms ({o['wait_frac']:.3f} of the exchange), excess {o['excess_over_gemm']:.2f}")
assert o["wait_frac"] <= 0.10, "the exchange did not progress during the GEMM"
PY
    # Every strategy × layout on a dense and a document mask (the mask sweep itself runs on one
    # node: cli_bench_cp_quick_mpi): results right, bytes as the formula says, across TCP.
    on_node1 "${across[@]}" "$bin" bench cp --quick --threads 1 --masks causal causal_documents --json \
      > "$work/cp.json" || { cat "$work/cp.json"; fail "bench cp across the nodes"; }
    python3 - "$work/cp.json" <<'PY' || { cat "$work/cp.json"; fail "bench cp across the nodes"; }
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cells = {(r["strategy"], r["layout"]) for r in rows}
print(f"bench cp across nodes: {len(rows)} rows, {len(cells)} strategy x layout cells")
assert len(cells) >= 18, sorted(cells)
assert all(r["wrong"] == 0 and r["efficiency"] > 0 for r in rows), "wrong data or no efficiency"
assert all(r["bytes_sent"] == r["bytes_formula"] for r in rows), "bytes sent differ from the formula"
PY
    ;;
  *) fail "unknown mode $mode" ;;
esac

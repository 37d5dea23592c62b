#!/usr/bin/env bash
# torchrun across two "nodes" of scripts/cluster.sh: one torchrun per node namespace, static
# rendezvous at node1's address (no host name resolves there: every socket must use addresses).
#   torchrun_nodes.sh MODE LONGHAUL WORKDIR [PYTHONPATH of the longhaul module]
#   train     `longhaul train --cp 2` on 2 nodes x 2 ranks equals the same 4 ranks on one node, bitwise
#   rdzv      the same train run with torchrun's elastic rendezvous (--rdzv-backend c10d
#             --rdzv-endpoint node1:PORT); torchrun's rendezvous needs node names that resolve,
#             so these nodes get them (cluster.sh --hosts)
#   example   examples/train_gpt.py on 2 nodes x 2 ranks (needs the Python module): its loss falls
#   faults    bad launches end with a named error within the deadline, nothing left running:
#             node2 never starts; two nodes claim node rank 0; MASTER_ADDR resolves to nothing;
#             a namespace off the job's network tries to join
# Exits 77 (skipped, reason printed) where network namespaces cannot be made.
set -euo pipefail
mode=$1 bin=$2 work=$3 pypath=${4:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${LONGHAUL_PYTHON:-python3}
export LONGHAUL_CLUSTER_PREFIX=lht LONGHAUL_CLUSTER_NET=10.79.0 OMP_NUM_THREADS=1
master=$LONGHAUL_CLUSTER_NET.1
source "$root/tests/cluster/common.sh"
require_netns
if [ "$mode" = rdzv ]; then
  cluster_start 2 --hosts
else
  cluster_start 3
  ip -n lht-node3 link del eth0  # node3: a namespace off the job's network
fi
rm -rf "$work" && mkdir -p "$work"
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

# torchrun on NODE as node rank R of N nodes, 2 ranks per node (NPROC to change it):
#   torchrun_on NODE R N LOG CMD...
torchrun_on() {
  local node=$1 rank=$2 nnodes=$3 log=$4
  shift 4
  timeout --signal=KILL 300 "$cluster" exec "$node" "$python" -m torch.distributed.run --nnodes "$nnodes" \
    --node-rank "$rank" --nproc-per-node "${NPROC:-2}" --master-addr "$master" --master-port "$port" --no-python "$@" \
    > "$log" 2> "$log.err"
}
# Both nodes, node1's output in OUT: across OUT CMD...
across() {
  local out=$1
  shift
  torchrun_on node2 1 2 "$out.node2" "$@" &
  local second=$!
  torchrun_on node1 0 2 "$out" "$@" || { cat "$out.err"; fail "node1: $*"; }
  wait "$second" || { cat "$out.node2.err"; fail "node2: $*"; }
}

case "$mode" in
  train)
    across "$work/nodes.json" "$bin" "${train_args[@]}" --workdir "$work/nodes"
    NPROC=4 torchrun_on node1 0 1 "$work/one.json" "$bin" "${train_args[@]}" --workdir "$work/one" \
      || { cat "$work/one.json.err"; fail "one node"; }
    same_losses "$work/nodes.json" "$work/one.json" "torchrun train across the nodes"
    echo "torchrun train across 2 nodes x 2 ranks: 4 losses equal to one node (4 ranks), bitwise" ;;
  rdzv)
    for n in 1 2; do
      timeout --signal=KILL 300 "$cluster" exec "node$n" "$python" -m torch.distributed.run --nnodes 2 \
        --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint "node1:$port" --rdzv-id longhaul-test --no-python \
        "$bin" "${train_args[@]}" --workdir "$work/rdzv" > "$work/rdzv$n.json" 2> "$work/rdzv$n.err" &
    done
    for n in 1 2; do wait -n || { cat "$work"/rdzv*.err; fail "elastic rendezvous run"; }; done
    NPROC=4 torchrun_on node1 0 1 "$work/one.json" "$bin" "${train_args[@]}" --workdir "$work/one" \
      || { cat "$work/one.json.err"; fail "one node"; }
    # Rank 0 prints the rows, on whichever node the rendezvous put it.
    cat "$work/rdzv1.json" "$work/rdzv2.json" > "$work/rdzv.json"
    same_losses "$work/rdzv.json" "$work/one.json" "torchrun with elastic rendezvous across the nodes"
    echo "torchrun --rdzv-backend c10d across 2 nodes x 2 ranks: 4 losses equal to one node (4 ranks), bitwise" ;;
  example)
    [ -n "$pypath" ] || skip "no Python module given"
    export PYTHONPATH=$pypath${PYTHONPATH:+:$PYTHONPATH}
    across "$work/example.txt" "$python" "$root/examples/train_gpt.py" --steps 60
    "$python" - "$work/example.txt" <<'PY' || { cat "$work/example.txt"; fail "the example across nodes"; }
import re, sys
losses = [float(x) for x in re.findall(r"^step \d+/60 loss ([0-9.]+)", open(sys.argv[1]).read(), re.M)]
assert len(losses) == 60, len(losses)
first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
print(f"train_gpt.py across 2 nodes x 2 ranks: loss {first:.3f} -> {last:.3f}")
assert last < first - 0.3, losses
PY
    ;;
  faults)
    deadline=5
    info=("$bin" info --json --timeout "$deadline")
    # Ends with a non-zero code within DEADLINE + 10 s, the message naming what went wrong.
    expect_fail() {
      local what=$1 pattern=$2 log=$3 started=$4
      local took=$(( $(date +%s) - started ))
      if [ "$took" -gt $((deadline + 10)) ]; then fail "$what: took $took s, more than the deadline + 10 s"; fi
      grep -qE "$pattern" "$log" "$log.err" || { cat "$log.err"; fail "$what: no message matching '$pattern'"; }
      echo "$what: failed as expected in $took s ($(grep -hoE "$pattern" "$log" "$log.err" | head -1))"
    }
    # Ranks started with the variables a launcher sets (longhaul's own bootstrap: rank 0 serves
    # the store at MASTER_ADDR): rank_on NODE RANK WORLD LOG
    rank_on() {
      timeout --signal=KILL 120 "$cluster" exec "$1" env MASTER_ADDR="$master" MASTER_PORT="$port" RANK="$2" \
        WORLD_SIZE="$3" LOCAL_RANK=$(($2 % 2)) LOCAL_WORLD_SIZE=2 "${info[@]}" > "$4" 2> "$4.err"
    }
    # node2 never starts: node1's ranks give up at the deadline, naming the ranks that never came.
    t0=$(date +%s)
    rank_on node1 1 4 "$work/alone1" & other=$!
    if rank_on node1 0 4 "$work/alone0"; then fail "node1 alone succeeded"; fi
    wait "$other" && fail "node1's rank 1 alone succeeded" || true
    expect_fail "node2 never starts" "2, 3|ranks? \[?2" "$work/alone0" "$t0"
    # Two nodes claim the same ranks (both think they are node 0).
    t0=$(date +%s)
    pids=()
    for node in node1 node2; do for r in 0 1; do rank_on "$node" "$r" 4 "$work/dup_${node}_$r" & pids+=($!); done; done
    for p in "${pids[@]}"; do wait "$p" && fail "a rank of the duplicated node succeeded" || true; done
    cat "$work"/dup_* > "$work/dup" 2>/dev/null; touch "$work/dup.err"
    expect_fail "two nodes claim the same ranks" "joined [0-9]+ times|same rank" "$work/dup" "$t0"
    # MASTER_ADDR that resolves to nothing: longhaul's own bootstrap (no torchrun agent).
    t0=$(date +%s)
    if timeout --signal=KILL 120 "$cluster" exec node1 env MASTER_ADDR=no-such-host.invalid MASTER_PORT="$port" \
        RANK=1 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 "${info[@]}" > "$work/nohost" 2> "$work/nohost.err"; then
      fail "an unresolvable MASTER_ADDR succeeded"
    fi
    expect_fail "MASTER_ADDR resolves to nothing" "no-such-host.invalid" "$work/nohost" "$t0"
    # A namespace off the job's network cannot join: its connection fails naming address and port.
    t0=$(date +%s)
    if timeout --signal=KILL 120 "$cluster" exec node3 env MASTER_ADDR="$master" MASTER_PORT="$port" \
        RANK=1 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 "${info[@]}" > "$work/outside" 2> "$work/outside.err"; then
      fail "a rank off the network joined"
    fi
    expect_fail "a namespace off the network" "$master:$port" "$work/outside" "$t0"
    left=$(for ns in lht-node1 lht-node2 lht-node3; do ip netns pids "$ns"; done | wc -l)
    [ "$left" -eq 0 ] || fail "$left processes left running in the nodes"
    echo "faults: every bad launch ended with a named error, nothing left running" ;;
  *) fail "unknown mode $mode" ;;
esac

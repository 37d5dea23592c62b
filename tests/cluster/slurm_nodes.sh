#!/usr/bin/env bash
# A real Slurm on the namespace cluster of scripts/cluster.sh: a munged of the test's own (its key,
# its socket), slurmctld on node1 and one slurmd per node, from a generated slurm.conf; every
# daemon is stopped and every file removed on exit.
#   slurm_nodes.sh MODE LONGHAUL WORKDIR
#   train  `srun -N 2 -n 4 longhaul train --cp 2` (Slurm without MPI: c10d over Gloo, the store on
#          the first host of the allocation) equals the same 4 ranks under torchrun on one node
#   pmix   `srun --mpi=pmix -N 2 -n 4 longhaul info` (MPI started by Slurm) places 2 ranks per node
# Exits 77 (skipped, reason printed) without network namespaces or without the Slurm and munge
# packages (Debian: slurm-wlm, munge).
set -euo pipefail
mode=$1 bin=$2 work=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${LONGHAUL_PYTHON:-python3}
export LONGHAUL_CLUSTER_PREFIX=lhs LONGHAUL_CLUSTER_NET=10.80.0 OMP_NUM_THREADS=1
source "$root/tests/cluster/common.sh"
fail() { echo "FAIL: $*"; for f in "$work"/slurm/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 20 "$f"; }; done; exit 1; }

for tool in slurmctld slurmd srun munged munge; do command -v "$tool" >/dev/null || skip "$tool not found (Debian: apt-get install slurm-wlm munge)"; done
require_netns
s=$work/slurm
cluster_stop_hook() {  # the daemons this test started, by their pid files
  for f in "$s"/*.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  sleep 0.5
  for f in "$s"/*.pid; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  return 0
}
rm -rf "$work" && mkdir -p -m 700 "$work" "$s"
cluster_start 2 --hosts

# munge: the test's own key and socket (the system's munged, if any, is left alone).
dd if=/dev/urandom of="$s/munge.key" bs=1024 count=1 status=none
chmod 600 "$s/munge.key"
munged --force --socket="$s/munge.sock" --key-file="$s/munge.key" --pid-file="$s/munged.pid" \
  --log-file="$s/munged.log" --seed-file="$s/munged.seed"

cat > "$s/slurm.conf" <<EOF
ClusterName=longhaul-test
SlurmctldHost=node1($LONGHAUL_CLUSTER_NET.1)
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket=$s/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$s/ctld
SlurmdSpoolDir=$s/spool_%n
TmpFS=$s/tmp_%n
SlurmctldPidFile=$s/slurmctld.pid
SlurmdPidFile=$s/slurmd_%n.pid
SlurmctldLogFile=$s/slurmctld.log
SlurmdLogFile=$s/slurmd_%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=node1 NodeAddr=$LONGHAUL_CLUSTER_NET.1 CPUs=2 State=UNKNOWN
NodeName=node2 NodeAddr=$LONGHAUL_CLUSTER_NET.2 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
EOF
# slurmd loads a cgroup plugin whatever the proctrack/task plugins: name the hierarchy mounted here.
if [ -d /sys/fs/cgroup/cpuset ]; then echo "CgroupPlugin=cgroup/v1" > "$s/cgroup.conf"; else echo "CgroupPlugin=cgroup/v2" > "$s/cgroup.conf"; fi
mkdir -p "$s/ctld"
export SLURM_CONF=$s/slurm.conf
"$cluster" exec node1 slurmctld -i
for n in node1 node2; do mkdir -p "$s/spool_$n" "$s/tmp_$n"; "$cluster" exec "$n" slurmd -N "$n"; done
on_node1() { timeout --signal=KILL 300 "$cluster" exec node1 "$@"; }
# Both nodes idle (slurmd registered).
for _ in $(seq 1 100); do
  idle=$(on_node1 sinfo -h -N -o '%N %t' 2>/dev/null | grep -c idle || true)
  [ "$idle" -eq 2 ] && break
  sleep 0.2
done
[ "$idle" -eq 2 ] || { on_node1 sinfo -N || true; fail "the two slurmd did not register"; }

case "$mode" in
  train)
    on_node1 srun -N 2 -n 4 --ntasks-per-node 2 "$bin" "${train_args[@]}" --workdir "$work/slurm_run" > "$work/slurm.json" \
      || { cat "$work/slurm.json"; fail "srun train"; }
    on_node1 "$python" -m torch.distributed.run --nnodes 1 --nproc-per-node 4 --master-addr 127.0.0.1 \
      --master-port 29611 --no-python "$bin" "${train_args[@]}" --workdir "$work/one" > "$work/one.json" \
      || fail "torchrun on one node"
    same_losses "$work/slurm.json" "$work/one.json" "srun across nodes"
    on_node1 srun -N 2 -n 4 --ntasks-per-node 2 "$bin" info --json > "$work/info.json" || fail "srun info"
    grep -q '"placement": "node1: 0 1 | node2: 2 3"' "$work/info.json" || { cat "$work/info.json"; fail "srun placement"; }
    echo "srun -N 2 -n 4 train --cp 2: 4 losses equal to one node (torchrun, 4 ranks), bitwise; ranks 0 1 on node1, 2 3 on node2" ;;
  pmix)
    on_node1 srun --mpi=pmix -N 2 -n 4 --ntasks-per-node 2 "$bin" info --json > "$work/pmix.json" 2> "$work/pmix.err" \
      || { cat "$work/pmix.err"; fail "srun --mpi=pmix"; }
    grep -q '"backend": "mpi"' "$work/pmix.json" && grep -q '"placement": "node1: 0 1 | node2: 2 3"' "$work/pmix.json" \
      || { cat "$work/pmix.json"; fail "srun --mpi=pmix: backend or placement"; }
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    on_node1 srun --mpi=pmix -N 2 -n 4 --ntasks-per-node 2 "$bin" "${train_args[@]}" --workdir "$work/pmix_run" \
      > "$work/pmix_train.json" || fail "srun --mpi=pmix train"
    on_node1 mpirun --oversubscribe --bind-to none -np 4 "$bin" "${train_args[@]}" --workdir "$work/one" > "$work/one.json" \
      || fail "mpirun on one node"
    same_losses "$work/pmix_train.json" "$work/one.json" "srun --mpi=pmix across nodes"
    echo "srun --mpi=pmix -N 2 -n 4: backend mpi, ranks 0 1 on node1, 2 3 on node2; train --cp 2: 4 losses equal to mpirun on one node, bitwise" ;;
  *) fail "unknown mode $mode" ;;
esac

#!/usr/bin/env bash
# A small cluster on this machine: each "node" is a Linux network namespace with its own address,
# joined to the others by a bridge that lives in a namespace of its own (the host's network is not
# touched), and its own hostname (a UTS namespace per command). Needs root (or CAP_NET_ADMIN and
# CAP_SYS_ADMIN) and iproute2.
#
#   scripts/cluster.sh up [N] [--hosts]   nodes node1..nodeN (default 2) at 10.77.0.1..N/24;
#                                          --hosts: node names resolve on the nodes (a private
#                                          /etc/hosts for every command run there; Slurm needs it)
#   scripts/cluster.sh down                removes what `up` created (by name), nothing else
#   scripts/cluster.sh exec NODE CMD...    runs CMD on NODE (its network, hostname NODE)
#   scripts/cluster.sh agent HOST CMD...   Open MPI's remote launch agent (plm_rsh_agent): HOST is
#                                          a node's name or address, CMD runs there through sh -c
#   scripts/cluster.sh addr NODE           the node's address
#   scripts/cluster.sh mpirun-args         the mpirun options that launch across the nodes
#                                          (agent, TCP between nodes on the cluster's subnet)
#
# LONGHAUL_CLUSTER_PREFIX (default lh) names everything: namespaces PREFIX-node<i> and
# PREFIX-switch, links PREFIX-n<i>. Two clusters with different prefixes need different subnets:
# LONGHAUL_CLUSTER_NET (default 10.77.0).
set -euo pipefail
prefix=${LONGHAUL_CLUSTER_PREFIX:-lh}
net=${LONGHAUL_CLUSTER_NET:-10.77.0}
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

die() { echo "cluster: $*" >&2; exit 2; }

node_ns() {  # node name or address -> namespace
  local h=$1
  case "$h" in
    node[0-9]*) echo "$prefix-$h" ;;
    "$net".[0-9]*) echo "$prefix-node${h##*.}" ;;
    *) die "unknown host '$h' (expected nodeN or $net.N)" ;;
  esac
}

nodes_up() { ip netns list | awk '{print $1}' | grep -E "^$prefix-node[0-9]+$" | sort -V || true; }

down() {
  for ns in $(nodes_up) $(ip netns list | awk '{print $1}' | grep -x "$prefix-switch" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true  # what still runs there
    ip netns del "$ns"
  done
  rm -rf "$(state_dir)"
}

state_dir() { echo "/run/longhaul-cluster-$prefix"; }

up() {
  local n=2 hosts=0
  for a in "$@"; do
    case "$a" in
      --hosts) hosts=1 ;;
      *) n=$a ;;
    esac
  done
  [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "node count $n is outside 1..250"
  [ -z "$(nodes_up)" ] || die "a cluster with prefix '$prefix' is up already: scripts/cluster.sh down"
  trap 'down' ERR  # a failure half-way leaves nothing behind
  ip netns add "$prefix-switch"
  ip -n "$prefix-switch" link add br0 type bridge
  ip -n "$prefix-switch" link set br0 up
  for ((i = 1; i <= n; i++)); do
    local ns=$prefix-node$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add eth0 type veth peer name "$prefix-n$i" netns "$prefix-switch"
    ip -n "$prefix-switch" link set "$prefix-n$i" master br0 up
    ip -n "$ns" addr add "$net.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  if [ "$hosts" -eq 1 ]; then
    mkdir -p "$(state_dir)"
    { echo "127.0.0.1 localhost"; for ((i = 1; i <= n; i++)); do echo "$net.$i node$i"; done; } > "$(state_dir)/hosts"
  fi
  trap - ERR
  echo "cluster: $n nodes up: $(for ((i = 1; i <= n; i++)); do printf 'node%d=%s.%d ' "$i" "$net" "$i"; done)"
}

run_on() {  # NODE CMD...: CMD with NODE's network and hostname
  local ns
  ns=$(node_ns "$1")
  shift
  ip netns list | awk '{print $1}' | grep -qx "$ns" || die "node namespace $ns does not exist (scripts/cluster.sh up)"
  local hosts=$(state_dir)/hosts
  if [ -f "$hosts" ]; then  # a mount namespace of its own, where /etc/hosts names the nodes
    exec ip netns exec "$ns" unshare --uts --mount sh -c 'hostname "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"' \
      "${ns#"$prefix"-}" "$hosts" "$@"
  fi
  exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec "$@"' "${ns#"$prefix"-}" "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  exec) [ $# -ge 2 ] || die "usage: cluster.sh exec NODE CMD..."; run_on "$@" ;;
  agent)
    # Open MPI calls `agent HOST orted ARGS...` (as it would call ssh): the words form one command
    # line for the node's shell.
    [ $# -ge 2 ] || die "usage: cluster.sh agent HOST CMD..."
    host=$1
    shift
    run_on "$host" sh -c "$*" ;;
  addr) [ $# -eq 1 ] || die "usage: cluster.sh addr NODE"; ns=$(node_ns "$1"); echo "$net.${ns##*node}" ;;
  mpirun-args)
    echo "--mca plm_rsh_agent ${self%/*}/cluster_agent.sh --mca oob_tcp_if_include $net.0/24 --mca btl_tcp_if_include $net.0/24" \
         "--mca btl self,vader,tcp" ;;
  *) die "usage: cluster.sh up [N] | down | exec NODE CMD... | agent HOST CMD... | addr NODE | mpirun-args" ;;
esac

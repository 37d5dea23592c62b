# Sourced by the cluster tests once LONGHAUL_CLUSTER_PREFIX and LONGHAUL_CLUSTER_NET are set:
#   require_netns            skips the test (exit 77, reason printed) where namespaces cannot be made
#   cluster_start N [--hosts] the nodes (scripts/cluster.sh up), removed on exit, after
#                            cluster_stop_hook when the test defines one
#   train_args               the `longhaul train --cp 2` run every launch path repeats (4 steps)
#   same_losses A B WHAT     A's 4 losses equal B's bitwise (JSON rows of train_args)
cluster=$root/scripts/cluster.sh
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIPPED: $*"; exit 77; }
require_netns() {
  local probe=$LONGHAUL_CLUSTER_PREFIX-probe
  ip netns add "$probe" 2>/dev/null || skip "cannot create network namespaces here (needs root or CAP_NET_ADMIN, and iproute2)"
  ip netns del "$probe"
}
cluster_start() {
  "$cluster" down
  trap 'if declare -F cluster_stop_hook >/dev/null; then cluster_stop_hook || true; fi; "$cluster" down' EXIT
  "$cluster" up "$@" >/dev/null
}
train_args=(train --cp 2 --steps 4 --dim 32 --layers 1 --min-log2 5 --max-log2 8 --tokens-per-step 1024
            --eval-docs 4 --task-tokens 16384 --threads 1 --json --timeout 60)
losses() { grep -o '"loss_bits": "[^"]*"' "$1" || true; }
same_losses() {
  [ "$(losses "$1" | wc -l)" -eq 4 ] || { cat "$1"; fail "$3: no 4 steps"; }
  [ "$(losses "$1")" = "$(losses "$2")" ] || { losses "$1"; losses "$2"; fail "$3 differs from one node"; }
}

# Sourced by the cluster tests once LONGHAUL_CLUSTER_PREFIX and LONGHAUL_CLUSTER_NET are set:
#   require_netns            skips the test (exit 77, reason printed) where namespaces cannot be made
#   cluster_start N [--hosts] the nodes (scripts/cluster.sh up), removed on exit, after
#                            cluster_stop_hook when the test defines one
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

#!/usr/bin/env bash
# Open MPI's remote launch agent for the namespace cluster of scripts/cluster.sh: mpirun calls it
# as it would call ssh (`cluster_agent.sh HOST orted ARGS...`); see `scripts/cluster.sh agent`.
exec "$(dirname "$0")/cluster.sh" agent "$@"

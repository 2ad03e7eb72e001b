#!/usr/bin/env bash
# The log store benchmarks (issue #12) on a 3-node cluster in network
# namespaces (scripts/cluster, its own prefix and subnet): ingestion as a
# worker-only publisher on the host sends it (lines of about 150 bytes to
# FUNCTIONS log groups, acknowledged by an R3 quorum), with the CPU the
# three agents spent on it; then `logs tail --follow` latency, a line
# appended to the long poll's return through a node. Set LINES, FUNCTIONS,
# FOLLOWS to change the runs, WINDOW for the publisher's batches in flight per
# group (1: one at a time; default the log store's).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
LINES=${LINES:-1000000} FUNCTIONS=${FUNCTIONS:-4} FOLLOWS=${FOLLOWS:-200} WINDOW=${WINDOW:-0}

go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
NIMBUS_CLUSTER_DIR=$(mktemp -d /tmp/nblogs-bench.XXXXXX)
key=$(bin/nimbus keygen)
export NIMBUS_CLUSTER_DIR NIMBUS_CLUSTER_PREFIX=${NIMBUS_CLUSTER_PREFIX:-nblogs} NIMBUS_CLUSTER_NET=${NIMBUS_CLUSTER_NET:-10.213.62}
export NIMBUS_BIN=$PWD/bin/nimbus NIMBUS_AGENT_FLAGS="--log-level warn" NIMBUS_CLUSTER_ENCRYPT=$key
trap 'scripts/cluster down >/dev/null 2>&1 || true; rm -rf "$NIMBUS_CLUSTER_DIR"' EXIT
scripts/cluster up 3 >/dev/null
declare -A addr
servers=()
for n in n1 n2 n3; do
  addr[$n]=$(scripts/cluster addr $n)
  servers+=("${addr[$n]%:*}:$(( ${addr[$n]##*:} + 2 ))")
done
cpu() { # the agents' CPU seconds so far
  local t=0 p
  for n in n1 n2 n3; do
    p=$(cat "$NIMBUS_CLUSTER_DIR/$n/pid")
    t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
  done
  echo "$t"
}
echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(lscpu | sed -n 's/^Model name: *//p'); 3 agents in network namespaces on this one machine; load average $(cut -d' ' -f1-3 /proc/loadavg)"
bin/nimbus fn create hello --dir examples/hello/build --addr "${addr[n1]}" >/dev/null
servers_csv=$(IFS=,; echo "${servers[*]}")
echo "## ingestion: $LINES lines to $FUNCTIONS log groups, R3, from a publisher on the host"
c0=$(cpu) t0=$(date +%s.%N)
bin/nimbus bench logs --servers "$servers_csv" --encrypt "$key" --functions "$FUNCTIONS" --lines "$LINES" --follow 0 --window "$WINDOW"
c1=$(cpu) t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
awk -v c="$((c1 - c0))" -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "the three agents: %.2f cores over %.1f s\n", c / hz / (t1 - t0), t1 - t0 }'
echo "## follow latency through n2 (append on the host's publisher to the long poll's return)"
bin/nimbus bench logs --servers "$servers_csv" --encrypt "$key" --lines 0 --follow "$FOLLOWS" --function hello --addr "${addr[n2]}"

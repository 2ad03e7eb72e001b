#!/usr/bin/env bash
# The cluster benchmarks (issue #3), on a 3-node cluster in network
# namespaces (scripts/cluster, its own prefix and subnet): warm invoke
# latency through a node that does not lead, throughput with 32 callers
# spread over the three nodes, failover time (kill the leader, time to the
# first successful invoke through another node) over KILLS kills, and the
# ledger's grant+release rate. Single-node numbers: scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
DURATION=${DURATION:-10s}
KILLS=${KILLS:-10}

go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
NIMBUS_CLUSTER_DIR=$(mktemp -d /tmp/nimbus-bench-cluster.XXXXXX)
export NIMBUS_CLUSTER_DIR NIMBUS_CLUSTER_PREFIX=${NIMBUS_CLUSTER_PREFIX:-nbbench} NIMBUS_CLUSTER_NET=${NIMBUS_CLUSTER_NET:-10.213.60}
export NIMBUS_BIN=$PWD/bin/nimbus NIMBUS_AGENT_FLAGS="--log-level warn"
trap 'scripts/cluster down >/dev/null 2>&1 || true; rm -rf "$NIMBUS_CLUSTER_DIR"' EXIT
scripts/cluster up 3 >/dev/null
declare -A addr
for n in n1 n2 n3; do addr[$n]=$(scripts/cluster addr $n); done
leader_of() { bin/nimbus cluster raft -o json --addr "$1" 2>/dev/null | sed -n 's/.*"leader": "\([^"]*\)".*/\1/p'; }
now_ms() { date +%s%3N; }

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); 3 agents in network namespaces on this one machine"
bin/nimbus fn create hello --dir examples/hello/build --addr "${addr[n1]}" >/dev/null
leader=$(leader_of "${addr[n1]}")
follower=n1; [ "$leader" = n1 ] && follower=n2
echo "## warm invoke through $follower (leader: $leader)"
bin/nimbus bench warm --addr "${addr[$follower]}" --concurrency 1 --duration "$DURATION"
echo "## 3-node throughput, 32 callers spread over n1,n2,n3"
bin/nimbus bench warm --addrs "${addr[n1]},${addr[n2]},${addr[n3]}" --concurrency 32 --duration "$DURATION"

echo "## failover: kill the leader (SIGKILL), time to the first successful invoke through another node"
times=()
for i in $(seq 1 "$KILLS"); do
  leader=$(leader_of "${addr[n1]}"); [ -n "$leader" ] || leader=$(leader_of "${addr[n2]}")
  other=n1; [ "$leader" = n1 ] && other=n2
  bin/nimbus invoke hello --addr "${addr[$other]}" >/dev/null
  t0=$(now_ms)
  scripts/cluster kill "$leader" >/dev/null
  until bin/nimbus invoke hello --addr "${addr[$other]}" >/dev/null 2>&1; do :; done
  t1=$(now_ms)
  times+=($((t1 - t0)))
  echo "kill $i: $leader -> first invoke through $other after $((t1 - t0)) ms"
  scripts/cluster restart "$leader" >/dev/null
  for _ in $(seq 1 300); do
    [ "$(leader_of "${addr[$leader]}")" != "" ] && break
    sleep 0.1
  done
  sleep 2 # let the restarted server settle as a voter before the next kill
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
n=${#times[@]}
echo "failover over $n kills: p50=$(echo "$sorted" | sed -n "$(( (n + 1) / 2 ))p") ms min=$(echo "$sorted" | head -1) ms max=$(echo "$sorted" | tail -1) ms"

echo "## ledger grant+release on the leader (go test -bench)"
go test -run '^$' -bench 'LedgerGrantRelease' -benchtime 2s ./scheduler/ | grep -E '^Benchmark'

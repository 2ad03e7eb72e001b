#!/usr/bin/env bash
# The async benchmarks (issue #8), on a 3-node cluster in network
# namespaces (scripts/cluster, its own prefix and subnet): Event accept
# throughput and latency with 1 KB payloads, callers spread over the three
# nodes (an accept is answered once its entry is committed in Raft), and
# accept-to-start latency with idle capacity through a node that does not
# lead (measured first, before the throughput run leaves a backlog). Set CONCURRENCY, DURATION, COUNT to change the runs.
# PROFILE=DIR also serves pprof on each agent (port 6060) and saves, during
# the accept run, a CPU profile of the leader and of one follower and an
# execution trace of the leader in DIR. SKIP_START=1 skips the
# accept-to-start run. AGENT_FLAGS adds flags to every agent (--gomaxprocs 2, say).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-192}
COUNT=${COUNT:-200}

go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
NIMBUS_CLUSTER_DIR=$(mktemp -d /tmp/nimbus-bench-async.XXXXXX)
export NIMBUS_CLUSTER_DIR NIMBUS_CLUSTER_PREFIX=${NIMBUS_CLUSTER_PREFIX:-nbasync} NIMBUS_CLUSTER_NET=${NIMBUS_CLUSTER_NET:-10.213.61}
flags="--log-level warn ${AGENT_FLAGS:-}"
[ -z "${PROFILE:-}" ] || { mkdir -p "$PROFILE"; flags="$flags --debug-addr 0.0.0.0:6060"; }
export NIMBUS_BIN=$PWD/bin/nimbus NIMBUS_AGENT_FLAGS="$flags"
trap 'scripts/cluster down >/dev/null 2>&1 || true; rm -rf "$NIMBUS_CLUSTER_DIR"' EXIT
scripts/cluster up 3 >/dev/null
declare -A addr
for n in n1 n2 n3; do addr[$n]=$(scripts/cluster addr $n); done
leader_of() { bin/nimbus cluster raft -o json --addr "$1" 2>/dev/null | sed -n 's/.*"leader": "\([^"]*\)".*/\1/p'; }

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(lscpu | sed -n 's/^Model name: *//p'); 3 agents in network namespaces on this one machine; load average $(cut -d' ' -f1-3 /proc/loadavg)"
bin/nimbus fn create hello --dir examples/hello/build --addr "${addr[n1]}" >/dev/null
leader=$(leader_of "${addr[n1]}")
follower=n1; [ "$leader" = n1 ] && follower=n2
if [ -z "${SKIP_START:-}" ]; then
  echo "## async accept-to-start with idle capacity, through $follower"
  bin/nimbus bench async-start --function hello --addr "${addr[$follower]}" --count "$COUNT"
fi
# The accepted events run too, through the same hello code but with a
# reservation of RESERVED, so that the cluster is measured accepting rather
# than cold-starting hundreds of sandboxes on 2 cores.
bin/nimbus fn create hello-async --dir examples/hello/build --addr "${addr[n1]}" >/dev/null
bin/nimbus fn put-concurrency hello-async --reserved "${RESERVED:-4}" --addr "${addr[n1]}" >/dev/null
echo "## async accept, 1 KB payloads, $CONCURRENCY callers spread over n1,n2,n3 (leader: $leader; the function runs them ${RESERVED:-4} at a time)"
if [ -n "${PROFILE:-}" ]; then
  node_ip() { scripts/cluster addr "$1" | cut -d: -f1; }
  secs=$(( ${DURATION%s} - 4 ))
  ( sleep 2
    curl -s -o "$PROFILE/leader.cpu" "http://$(node_ip "$leader"):6060/debug/pprof/profile?seconds=$secs" &
    curl -s -o "$PROFILE/follower.cpu" "http://$(node_ip "$follower"):6060/debug/pprof/profile?seconds=$secs" &
    wait
    curl -s -o "$PROFILE/leader.trace" "http://$(node_ip "$leader"):6060/debug/pprof/trace?seconds=1" ) &
  prof=$!
fi
bin/nimbus bench async --function hello-async --addrs "${addr[n1]},${addr[n2]},${addr[n3]}" --concurrency "$CONCURRENCY" --duration "$DURATION" --payload-size 1024
[ -z "${PROFILE:-}" ] || wait "$prof"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"

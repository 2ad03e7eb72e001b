#!/usr/bin/env bash
# The queue benchmarks (issue #8) on one dev node: queue send, then
# receive (10 at a time) and delete, closed-loop callers; then a queue
# trigger with batch size 10 draining MESSAGES messages through the
# trivial hello function. Needs root. Starts its own node on a scratch
# data dir. Set CONCURRENCY, DURATION, MESSAGES, MAX_CONCURRENCY to change
# the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-64}
MESSAGES=${MESSAGES:-100000}
MAX_CONCURRENCY=${MAX_CONCURRENCY:-16}

go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
data=$(mktemp -d /tmp/nimbus-bench-queue.XXXXXX)
export NIMBUS_ADDR=127.0.0.1:${BENCH_PORT:-8791}
bin/nimbus agent --dev --data-dir "$data" --rpc-addr "$NIMBUS_ADDR" --http-addr off --log-level warn >"$data/agent.log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null; rm -rf "$data"' EXIT
until bin/nimbus fn list >/dev/null 2>&1; do sleep 0.1; done

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(lscpu | sed -n 's/^Model name: *//p'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
bin/nimbus fn create hello --dir examples/hello/build >/dev/null
echo "## queue send, receive, delete"
bin/nimbus bench queue --concurrency "$CONCURRENCY" --duration "$DURATION"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## for comparison: warm sync invocations of hello, $MAX_CONCURRENCY callers (the trigger's invoke path)"
bin/nimbus bench warm --function hello --concurrency "$MAX_CONCURRENCY" --duration "$DURATION"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## queue trigger, batch size 10"
bin/nimbus bench queue-trigger --function hello --messages "$MESSAGES" --batch-size 10 --max-concurrency "$MAX_CONCURRENCY"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"

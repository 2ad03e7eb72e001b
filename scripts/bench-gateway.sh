#!/usr/bin/env bash
# Warm invoke through the REST gateway beside the same through rpc, on one
# dev node: one caller (p50, p99) and 16 callers (throughput), for
# docs/BENCHMARKS.md. Needs root. Starts its own node on a scratch data dir
# and scratch ports.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
DURATION=${DURATION:-10s}

go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
data=$(mktemp -d /tmp/nimbus-bench-gw.XXXXXX)
export NIMBUS_ADDR=127.0.0.1:${BENCH_PORT:-8792}
http=127.0.0.1:${BENCH_HTTP_PORT:-8793}
bin/nimbus agent --dev --data-dir "$data" --rpc-addr "$NIMBUS_ADDR" --http-addr "$http" --log-level warn >"$data/agent.log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null; rm -rf "$data"' EXIT
until bin/nimbus fn list >/dev/null 2>&1; do sleep 0.1; done

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
bin/nimbus fn create hello --dir examples/hello/build >/dev/null
# Rounds alternate between the two paths so that the machine's noise
# falls on both alike.
for mem in 128 1792; do
  bin/nimbus fn update-config hello --memory "$mem" >/dev/null
  echo "## hello at $mem MB, warm: rpc and gateway, ${ROUNDS:-3} alternating rounds"
  for c in 1 16; do
    for _ in $(seq 1 "${ROUNDS:-3}"); do
      bin/nimbus bench warm --concurrency "$c" --duration "$DURATION"
      bin/nimbus bench gateway --endpoint-url "http://$http" --concurrency "$c" --duration "$DURATION"
    done
  done
done

#!/usr/bin/env bash
# Compares two sets of agent flags on one build, one dev node at a time,
# alternating ROUNDS times (default 4), so that the machine's drift falls on
# both alike. Each run: hello at 1792 MB, 30 cold starts back to back and 30
# 300 ms apart, each with the agent's and the sandboxes' CPU per start (the
# sandboxes' includes their container init, PID 1 and the function's
# start; the agent's the revision change before each start), one
# caller warm for DURATION (default 8s) with the agent's CPU (from /proc)
# and the sandboxes' (the cpuacct cgroup above them) per invocation, then
# 16 callers at 1024 MB (16 sandboxes fit the dev node's memory offer)
# after a 3 s warm-up.
#
#   scripts/bench-flags.sh "--gomaxprocs 2" ""      # FLAGS_A FLAGS_B
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
[ $# -eq 2 ] || { echo "usage: bench-flags.sh FLAGS_A FLAGS_B" >&2; exit 2; }
ROUNDS=${ROUNDS:-4} DURATION=${DURATION:-8s}
export NIMBUS_ADDR=127.0.0.1:${BENCH_PORT:-8796}

go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
agent=
data=
cleanup() {
  [ -z "$agent" ] || { kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; }
  [ -z "$data" ] || rm -rf "$data"
}
trap cleanup EXIT
agent_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f", ($14 + $15) * 1000000000 / hz }' "/proc/$agent/stat"; }
sandbox_cpu() { cat /sys/fs/cgroup/cpuacct/nimbus/cpuacct.usage 2>/dev/null || echo 0; }
count() { sed -n 's/.* n=\([0-9]*\) .*/\1/p'; }

run() { # LABEL FLAGS
  data=$(mktemp -d /tmp/nimbus-flags.XXXXXX)
  # shellcheck disable=SC2086 # the flags are words
  bin/nimbus agent --dev --data-dir "$data" --rpc-addr "$NIMBUS_ADDR" --http-addr off --metrics-addr "" --log-level warn $2 >"$data/agent.log" 2>&1 &
  agent=$!
  until bin/nimbus fn list >/dev/null 2>&1; do sleep 0.1; done
  bin/nimbus fn create hello --dir examples/hello/build --memory 1792 >/dev/null
  local a0 s0 a1 s1 out n gap
  for gap in 0s 300ms; do
    a0=$(agent_cpu); s0=$(sandbox_cpu)
    out=$(bin/nimbus bench cold --count 30 --interval "$gap")
    a1=$(agent_cpu); s1=$(sandbox_cpu)
    echo "$1 $gap apart: $out; CPU per cold start: agent $(( (a1-a0)/30/1000000 )) ms, sandboxes $(( (s1-s0)/30/1000000 )) ms"
  done
  a0=$(agent_cpu); s0=$(sandbox_cpu)
  out=$(bin/nimbus bench warm --concurrency 1 --duration "$DURATION")
  a1=$(agent_cpu); s1=$(sandbox_cpu); n=$(echo "$out" | count)
  echo "$1 $out; CPU per invocation: agent $(( (a1-a0)/n/1000 )) us, sandbox $(( (s1-s0)/n/1000 )) us"
  bin/nimbus fn update-config hello --memory 1024 >/dev/null
  bin/nimbus bench warm --concurrency 16 --duration 3s >/dev/null
  a0=$(agent_cpu)
  out=$(bin/nimbus bench warm --concurrency 16 --duration "$DURATION")
  a1=$(agent_cpu); n=$(echo "$out" | count)
  echo "$1 at 1024 MB: $out; agent $(( (a1-a0)/n/1000 )) us per invocation"
  cleanup
  agent= data=
}

echo "## $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); a: [$1] b: [$2]"
for i in $(seq 1 "$ROUNDS"); do
  run "a$i" "$1"
  run "b$i" "$2"
done

#!/usr/bin/env bash
# Compares two commits on this machine in one run: builds both, starts a dev
# node of each (own data dir and port), deploys examples/hello at MEMORY MB
# (default 1792) on both, then alternates the same benchmark between them
# ROUNDS times (default 3), so that load from elsewhere falls on both alike:
# cold starts (20, back to back; and 300 ms apart where the binary has
# `bench cold --interval`), warm latency with one caller and warm throughput with 16
# callers (DURATION each, default 5s). Prints each run's summary line.
#
#   scripts/bench-ab.sh BASE_REV [NEW_REV]     # NEW_REV defaults to the work tree
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
base=${1:?usage: bench-ab.sh BASE_REV [NEW_REV]}
new=${2:-}
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5s} MEMORY=${MEMORY:-1792}

work=$(mktemp -d /tmp/nimbus-ab.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  git worktree remove --force "$work/src-a" 2>/dev/null || true
  git worktree remove --force "$work/src-b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

build() { # REV DIR
  if [ -z "$1" ]; then
    go build -o "$2/" ./cmd/...
  else
    git worktree add -q --detach "$work/src-$(basename "$2")" "$1"
    (cd "$work/src-$(basename "$2")" && go build -o "$2/" ./cmd/...)
  fi
}
mkdir -p "$work/a" "$work/b"
build "$base" "$work/a"
build "$new" "$work/b"
CGO_ENABLED=0 go build -o "$work/bootstrap" ./examples/hello
mkdir -p "$work/code" && cp "$work/bootstrap" "$work/code/bootstrap"

port=${AB_PORT:-28791}
for side in a b; do
  extra=()
  if "$work/$side/nimbus" agent --help 2>&1 | grep -q -- --metrics-addr; then extra=(--metrics-addr ""); fi
  "$work/$side/nimbus" agent --dev --data-dir "$work/$side/data" --rpc-addr "127.0.0.1:$port" \
    ${extra[@]+"${extra[@]}"} --log-level warn >"$work/$side/agent.log" 2>&1 &
  pids+=($!)
  echo "$port" >"$work/$side/port"
  port=$((port + 1))
done
for side in a b; do
  addr=127.0.0.1:$(cat "$work/$side/port")
  until "$work/$side/nimbus" fn list --addr "$addr" >/dev/null 2>&1; do
    kill -0 "${pids[$([ $side = a ] && echo 0 || echo 1)]}" 2>/dev/null || { cat "$work/$side/agent.log" >&2; exit 1; }
    sleep 0.2
  done
  "$work/$side/nimbus" fn create hello --dir "$work/code" --memory "$MEMORY" --addr "$addr" >/dev/null
done

echo "## $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## a = ${base}, b = ${new:-work tree}; hello at $MEMORY MB; $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
  for side in a b; do
    addr=127.0.0.1:$(cat "$work/$side/port")
    n="$work/$side/nimbus"
    echo "# round $r, $side"
    "$n" bench cold --count 20 --addr "$addr" | tail -1
    # Cold starts 300 ms apart (untimed), where the binary can: its pool of
    # sandbox shells fills again between them.
    if [[ $("$n" bench cold --help 2>&1) == *--interval* ]]; then
      "$n" bench cold --count 20 --interval 300ms --addr "$addr" | tail -1 | sed 's/^cold /cold, 300 ms apart, /'
    fi
    "$n" bench warm --concurrency 1 --duration "$DURATION" --addr "$addr" | tail -1
    "$n" bench warm --concurrency 16 --duration "$DURATION" --addr "$addr" | tail -1
  done
done

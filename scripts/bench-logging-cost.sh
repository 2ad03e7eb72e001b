#!/usr/bin/env bash
# What log shipping costs the warm invoke path (issue #12's 10% bound): the
# same build with log shipping on, and with logstore's Store.Append made to
# return at once (a `go build -overlay`: no line is queued, batched or
# shipped; the sandbox's pipe, its 4 KB tail and the invocation are
# unchanged). For each, ROUNDS times alternating: a fresh dev node, hello
# at 1792 MB with one caller, then hello at 1024 MB with 16 callers (16 fit
# a dev node), DURATION each. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10s}
scratch=$(mktemp -d /tmp/nbcost.XXXXXX)
agent=
trap '[ -z "$agent" ] || { kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null; }; rm -rf "$scratch"' EXIT
awk '{ print } /^func \(s \*Store\) Append\(/ { print "\tif true { // nimbus-noship\n\t\treturn nil\n\t}" }' logstore/store.go >"$scratch/store.go"
[ "$(grep -c 'nimbus-noship' "$scratch/store.go")" = 1 ] || { echo "Store.Append not found once in logstore/store.go" >&2; exit 1; }
printf '{"Replace":{"%s":"%s"}}\n' "$PWD/logstore/store.go" "$scratch/store.go" >"$scratch/overlay.json"
go build -o bin/ ./cmd/...
go build -overlay "$scratch/overlay.json" -o "$scratch/nimbus-noship" ./cmd/nimbus
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
export NIMBUS_ADDR=127.0.0.1:${BENCH_PORT:-8795}
if bin/nimbus fn list >/dev/null 2>&1; then
  echo "something answers on $NIMBUS_ADDR already: stop it or set BENCH_PORT" >&2
  exit 1
fi
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(lscpu | sed -n 's/^Model name: *//p')"
run() { # binary label
  local data one many load deadline
  data=$(mktemp -d "$scratch/data.XXXXXX")
  "$1" agent --dev --data-dir "$data" --rpc-addr "$NIMBUS_ADDR" --http-addr off --metrics-addr "" --log-level warn >"$data/agent.log" 2>&1 &
  agent=$!
  deadline=$((SECONDS + 60))
  until bin/nimbus fn list >/dev/null 2>&1; do
    if ! kill -0 "$agent" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "the agent ($2) did not come up:" >&2
      cat "$data/agent.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  bin/nimbus fn create hello --dir examples/hello/build --memory 1792 >/dev/null
  bin/nimbus fn create hello16 --dir examples/hello/build --memory 1024 >/dev/null
  load=$(cut -d' ' -f1 /proc/loadavg)
  one=$(bin/nimbus bench warm --function hello --concurrency 1 --duration "$DURATION")
  many=$(bin/nimbus bench warm --function hello16 --concurrency 16 --duration "$DURATION")
  echo "$2 (load $load at the start) | 1 caller: $(grep -o 'p50=.*errors=[0-9]*' <<<"$one") | 16 callers: $(grep -o 'p50=.*throttled=[0-9]*' <<<"$many")"
  kill "$agent"
  wait "$agent" 2>/dev/null || true
  agent=
  rm -rf "$data"
}
for _ in $(seq "$ROUNDS"); do
  run bin/nimbus "shipping on"
  run "$scratch/nimbus-noship" "Append a no-op"
done

#!/usr/bin/env bash
# The main job: build nimbus and the examples, start a dev node on embedded
# defaults, deploy examples/hello and invoke it. The node keeps running in
# the foreground afterwards (Ctrl-C stops it); NIMBUS_DEMO_EXIT=1 stops it
# right after the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "nimbus runs functions in containers (cgroups, namespaces): run as root, e.g. sudo $0" >&2
  exit 1
fi
scripts/install-deps.sh
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin

echo "==> building nimbus and examples/hello"
go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello

data=${NIMBUS_DATA_DIR:-/var/lib/nimbus-dev}
export NIMBUS_ADDR=${NIMBUS_ADDR:-127.0.0.1:8700}
mkdir -p "$data"
echo "==> starting a dev node on $NIMBUS_ADDR (data dir $data, log $data/agent.log)"
bin/nimbus agent --dev --data-dir "$data" --rpc-addr "$NIMBUS_ADDR" >"$data/agent.log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null' EXIT
for _ in $(seq 1 300); do
  bin/nimbus fn list >/dev/null 2>&1 && break
  kill -0 $agent 2>/dev/null || { cat "$data/agent.log" >&2; exit 1; }
  sleep 0.1
done

echo "==> deploying examples/hello"
if bin/nimbus fn get hello >/dev/null 2>&1; then
  bin/nimbus fn update-code hello --dir examples/hello/build
else
  bin/nimbus fn create hello --runtime provided --handler bootstrap --dir examples/hello/build
fi

echo "==> invoking hello (cold start)"
bin/nimbus invoke hello --payload '{"name":"newcomer"}' --log-tail
echo "==> invoking hello again (warm)"
bin/nimbus invoke hello --payload '{"name":"again"}' --log-tail

cat <<TXT

The node is up. Try, from another shell (NIMBUS_ADDR=$NIMBUS_ADDR):
  bin/nimbus fn list
  bin/nimbus invoke hello --payload '{"name":"you"}'
  bin/nimbus logs tail hello --follow
  bin/nimbus fn create shell --dir examples/shell && bin/nimbus invoke shell --payload '{"x":1}'
  bin/nimbus bench warm --concurrency 16
TXT
if [ "${NIMBUS_DEMO_EXIT:-0}" = 1 ]; then
  exit 0
fi
echo "(Ctrl-C stops the node)"
wait $agent

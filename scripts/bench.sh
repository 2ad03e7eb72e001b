#!/usr/bin/env bash
# Runs the issue #2 benchmarks on this machine and prints the numbers that go
# into docs/BENCHMARKS.md: cold start, warm latency (one caller), warm
# throughput (16 callers), at 128 MB (the default) and 1792 MB (one vCPU),
# each p50 beside its floor (`nimbus bench floors`: a loopback HTTP echo, the
# host exec of the same bootstrap) as a ratio;
# node memory with 100 idle warm sandboxes; and the same bootstrap started by
# the runc CLI. Needs root. Starts its own node on a scratch data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
DURATION=${DURATION:-10s}

go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
data=$(mktemp -d /tmp/nimbus-bench.XXXXXX)
export NIMBUS_ADDR=127.0.0.1:${BENCH_PORT:-8790}
# The /tmp budget counts each sandbox's 512 MB disk in full (they are
# sparse): the 100 idle sandboxes below need 51 GB of it.
bin/nimbus agent --dev --data-dir "$data" --rpc-addr "$NIMBUS_ADDR" --http-addr off --log-level warn --sandbox-tmp-budget 60000 >"$data/agent.log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null; rm -rf "$data"' EXIT
until bin/nimbus fn list >/dev/null 2>&1; do sleep 0.1; done

# CPU time in ns: the agent's (user + system, from /proc), and its
# sandboxes' (the cpuacct cgroup above them all: cgroup v1, as the agent
# uses; pooled shells that wait use next to none).
agent_cpu_ns() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f", ($14 + $15) * 1000000000 / hz }' "/proc/$agent/stat"; }
sandbox_cpu_ns() { cat /sys/fs/cgroup/cpuacct/nimbus/cpuacct.usage 2>/dev/null || echo 0; }

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
bin/nimbus fn create hello --dir examples/hello/build >/dev/null

# The floors (issue #13), and each p50 as a multiple of its floor.
p50() { sed -n 's/.* p50=\([0-9.]*\)ms.*/\1/p'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
echo "## floors"
floors=$(bin/nimbus bench floors --bootstrap examples/hello/build/bootstrap)
echo "$floors"
http_floor=$(echo "$floors" | grep 'floor http' | p50)
exec_floor=$(echo "$floors" | grep 'floor host exec' | p50)

for mem in 128 1792; do
  bin/nimbus fn update-config hello --memory "$mem" >/dev/null
  echo "## hello at $mem MB"
  line=$(bin/nimbus bench cold --count 30)
  echo "$line (p50 $(ratio "$(echo "$line" | p50)" "$exec_floor") the host exec)"
  line=$(bin/nimbus bench cold --count 30 --interval 300ms | sed 's/^cold /cold, 300 ms apart, /')
  echo "$line (p50 $(ratio "$(echo "$line" | p50)" "$exec_floor") the host exec)"
  a0=$(agent_cpu_ns); s0=$(sandbox_cpu_ns)
  line=$(bin/nimbus bench warm --concurrency 1 --duration "$DURATION")
  a1=$(agent_cpu_ns); s1=$(sandbox_cpu_ns)
  n=$(echo "$line" | sed -n 's/.* n=\([0-9]*\) .*/\1/p')
  echo "$line (p50 $(ratio "$(echo "$line" | p50)" "$http_floor") the HTTP echo)"
  echo "CPU per warm invocation: agent $(( (a1-a0)/n/1000 )) us, sandbox $(( (s1-s0)/n/1000 )) us"
  bin/nimbus bench warm --concurrency 16 --duration "$DURATION"
done

echo "## memory with 100 idle warm sandboxes (hello, 128 MB each)"
rss() { awk '/VmRSS/{print $2}' "/proc/$agent/status"; }
sandboxes_kb() { echo $(( $(cat /sys/fs/cgroup/memory/nimbus/memory.usage_in_bytes 2>/dev/null || echo 0) / 1024 )); }
bin/nimbus fn delete hello >/dev/null
sleep 1
rss0=$(rss); sb0=$(sandboxes_kb); free0=$(free -k | awk '/Mem:/{print $3}')
for i in $(seq -w 1 100); do
  bin/nimbus fn create "idle$i" --dir examples/hello/build >/dev/null
  bin/nimbus invoke "idle$i" >/dev/null
done
sleep 1
rss1=$(rss); sb1=$(sandboxes_kb); free1=$(free -k | awk '/Mem:/{print $3}')
echo "agent RSS: before ${rss0} KB, after ${rss1} KB ($(( (rss1-rss0)/100 )) KB per sandbox in the agent)"
echo "sandbox cgroups (memory.usage_in_bytes, page cache included): $(( (sb1-sb0)/1024 )) MB total, $(( (sb1-sb0)/100 )) KB per sandbox"
echo "host memory used (free): +$(( (free1-free0)/1024 )) MB, $(( (free1-free0)/100 )) KB per sandbox"

echo "## the same bootstrap under the runc CLI"
if command -v runc >/dev/null && command -v hyperfine >/dev/null && command -v python3 >/dev/null; then
  b=$(mktemp -d /tmp/nimbus-runc.XXXXXX)
  (cd "$b" && runc spec)
  python3 - "$b/config.json" "$data/images/provided-3" "$PWD/examples/hello/build" <<'PY'
import json, sys
path, rootfs, code = sys.argv[1:]
c = json.load(open(path))
c["root"] = {"path": rootfs, "readonly": True}
c["process"]["terminal"] = False
c["process"]["args"] = ["/var/task/bootstrap"]
c["process"]["user"] = {"uid": 993, "gid": 990}
c["process"]["env"] += ["AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001"]
c["mounts"].append({"destination": "/var/task", "type": "bind", "source": code, "options": ["rbind", "ro"]})
c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=512m"]})
c["linux"]["resources"] = {"memory": {"limit": 128 << 20}, "cpu": {"quota": 100000, "period": 100000}}
json.dump(c, open(path, "w"))
PY
  echo "runc run of hello's bootstrap: container start, Go runtime start, one failed connect to the Runtime API, exit, teardown"
  hyperfine -N -i --warmup 3 --runs 30 --style basic "runc run --bundle $b nimbus-bench-runc" 2>&1 | grep -E "Time|Range"
  rm -rf "$b"
else
  echo "(runc, hyperfine or python3 missing: apt-get install runc hyperfine)"
fi

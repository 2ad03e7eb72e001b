#!/usr/bin/env bash
# Cold starts of a hello handler in each managed runtime (and provided, for
# reference) at 128 MB and 1024 MB: p50/p90 of invoke to response with no warm
# sandbox (`nimbus bench cold`, back to back, 300 ms and 1 s apart), and each
# image's size. Prints what goes into
# docs/BENCHMARKS.md. Needs root and the images (scripts/build-images.sh).
# Starts its own dev node on a scratch data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
COUNT=${COUNT:-30}
RUNTIMES=${RUNTIMES:-provided python3.13 nodejs20.x ruby3.3 java21}

go build -o bin/ ./cmd/...
CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
data=$(mktemp -d /tmp/nimbus-bench-rt.XXXXXX)
export NIMBUS_ADDR=127.0.0.1:${BENCH_PORT:-8791}
bin/nimbus agent --dev --data-dir "$data" --rpc-addr "$NIMBUS_ADDR" --http-addr off --log-level warn >"$data/agent.log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null; rm -rf "$data"' EXIT
until bin/nimbus fn list >/dev/null 2>&1; do sleep 0.1; done

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## images"
bin/nimbus image list

# Java's hello is compiled with the compiler module of the image's own JRE,
# in a hard-linked copy of the image (the image is never written).
java_classes() {
  local root img
  root=$(ls -d /var/cache/nimbus/images/java21-* | head -1)
  img="$data/javac"
  cp -al "$root" "$img"
  mkdir -p "$img/build"
  cp examples/runtimes/java/example/Hello.java "$img/build/"
  # The JVM finds its libraries through $ORIGIN, which needs /proc.
  unshare -m --propagation private sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$img" \
    /usr/lib/jvm/java-21-openjdk-amd64/bin/java -m jdk.compiler/com.sun.tools.javac.Main -d /build/out /build/Hello.java
  mkdir -p "$data/java-code" && cp -r "$img/build/out/." "$data/java-code/" && chmod -R a+rX "$data/java-code"
  rm -rf "$img"
}

for rt in $RUNTIMES; do
  case $rt in
    provided)   args=(--runtime provided --dir examples/hello/build) ;;
    python3.13) args=(--runtime python3.13 --handler app.handler --dir examples/runtimes/python) ;;
    nodejs20.x) args=(--runtime nodejs20.x --handler index.handler --dir examples/runtimes/nodejs) ;;
    ruby3.3)    args=(--runtime ruby3.3 --handler app.handler --dir examples/runtimes/ruby) ;;
    java21)     java_classes; args=(--runtime java21 --handler example.Hello::handle --dir "$data/java-code") ;;
  esac
  name=hello-${rt//./-}
  bin/nimbus fn create "$name" "${args[@]}" >/dev/null
  for mem in 128 1024; do
    bin/nimbus fn update-config "$name" --memory "$mem" >/dev/null
    echo "## $rt at $mem MB"
    bin/nimbus bench cold --function "$name" --count "$COUNT"
    # 300 ms apart (untimed): the node's pool of this runtime's sandbox
    # shells fills again between them.
    bin/nimbus bench cold --function "$name" --count "$COUNT" --interval 300ms | sed 's/^cold /cold, 300 ms apart, /'
    # 1 s apart: time for a primed shell (the interpreter started ahead)
    # to be ready again, even for the JVM.
    bin/nimbus bench cold --function "$name" --count "$COUNT" --interval 1s | sed 's/^cold /cold, 1 s apart, /'
  done
  bin/nimbus fn delete "$name" >/dev/null
done

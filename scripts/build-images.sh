#!/usr/bin/env bash
# Builds the managed runtimes' images the tests use into the machine's image
# store (/var/cache/nimbus/images, where the agents and the tests look), with
# `nimbus image build --local`, from the machine's own apt sources
# ($NIMBUS_MIRROR overrides). The four build at once (each holds its own
# lock; they wait on the network and dpkg more than on the CPU). An image
# whose recipe did not change is kept, so a second run takes seconds. Prints
# how long each took. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
dir=/var/cache/nimbus/images
runtimes=${NIMBUS_TEST_RUNTIMES:-python3.13 nodejs20.x ruby3.3 java21}
bin=$(mktemp -d)/nimbus
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/nimbus
mirror=()
[ -n "${NIMBUS_MIRROR:-}" ] && mirror=(--mirror "$NIMBUS_MIRROR")
logs=$(dirname "$bin")
pids=()
for rt in $runtimes; do
  ( start=$(date +%s%N)
    if "$bin" image build --local --image-dir "$dir" "${mirror[@]}" -v "$rt" >"$logs/$rt.log" 2>&1; then
      ms=$(( ($(date +%s%N) - start) / 1000000 ))
      echo "build-images: $rt ready in $((ms / 1000)).$(( (ms % 1000) / 100 )) s: $(tail -n 1 "$logs/$rt.log")"
    else
      echo "build-images: $rt failed:" >&2
      tail -n 30 "$logs/$rt.log" >&2
      exit 1
    fi ) &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
exit $fail

#!/usr/bin/env bash
# Builds AWS's Node.js runtime interface client (npm aws-lambda-ric, with
# its native part: it compiles curl and aws-lambda-cpp, a few minutes on 2
# cores) once into a cache that outlives /tmp, for the compatibility test
# that runs it as a custom runtime (node/ric_test.go). Version 3.3.0: 4.x
# needs Node.js 22, and this machine has 20. Safe to run again: a complete
# build is kept (its .complete stamp is written last), an incomplete one is
# built again.
#
#   scripts/install-ric.sh            # prints the directory holding node_modules/aws-lambda-ric
set -euo pipefail
version=3.3.0
dir=${NIMBUS_RIC_DIR:-/var/cache/nimbus/aws-lambda-ric-$version}
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi
need=()
for pair in cmake:cmake autoreconf:autoconf automake:automake libtoolize:libtool make:make g++:g++ npm:npm; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "missing packages: ${need[*]} (run as root to install them)" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
mkdir -p "$(dirname "$dir")"
rm -rf "$dir".tmp.*
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --no-audit --no-fund --no-save --loglevel error "aws-lambda-ric@$version" >&2)
[ -f "$tmp/node_modules/aws-lambda-ric/dist/rapid-client.node" ] || { echo "aws-lambda-ric built no native client" >&2; exit 1; }
# What a function needs of it at run time: its entry point and dist.
rm -rf "$tmp/node_modules/aws-lambda-ric/deps"
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"

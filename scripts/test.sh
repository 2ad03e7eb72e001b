#!/usr/bin/env bash
# Sets up and runs the whole test suite: unit tests, fuzz seeds, and the
# end-to-end tests on real containers (they need root; as another user they
# skip and say why).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# What only the tests need, built once into caches outside /tmp (the main
# job needs neither): the managed runtimes' images (root only: the builds
# chroot, and the runtime tests need root anyway), and AWS's Node.js runtime
# interface client for the test that runs it as a custom runtime.
if [ "$(id -u)" -eq 0 ]; then
  scripts/build-images.sh
  scripts/install-ric.sh >/dev/null
else
  echo "test.sh: not root: the runtime images and the runtime interface client are not built (the tests that need them skip when not root)" >&2
fi
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
go vet ./...
# The CLI builds for macOS and Windows (workers are Linux only).
for os in darwin windows; do GOOS=$os GOARCH=amd64 go build -o /dev/null ./cmd/nimbus; done
go test -count=1 -timeout 20m ./...
# The packages whose concurrency is their own, once more under the race detector.
go test -race -count=1 -timeout 10m ./rpc/ ./logstore/ ./scheduler/ ./bundle/ ./gateway/

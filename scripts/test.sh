#!/usr/bin/env bash
# Sets up and runs the whole test suite: unit tests, fuzz seeds, and the
# end-to-end tests on real containers (they need root; as another user they
# skip and say why).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# AWS's Node.js runtime interface client, built once into a cache, for the
# test that runs it as a custom runtime (the main job does not need it).
scripts/install-ric.sh >/dev/null
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
go vet ./...
# The CLI builds for macOS and Windows (workers are Linux only).
for os in darwin windows; do GOOS=$os GOARCH=amd64 go build -o /dev/null ./cmd/nimbus; done
go test -count=1 -timeout 20m ./...
# The packages whose concurrency is their own, once more under the race detector.
go test -race -count=1 -timeout 10m ./rpc/ ./logstore/ ./scheduler/ ./bundle/ ./gateway/

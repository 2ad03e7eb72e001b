#!/bin/sh
# Takes one event and holds ~200 MB in memory: far over its 128 MB limit.
set -eu
curl -sS -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
head -c 200000000 /dev/zero | tail > /dev/null
echo "still alive"

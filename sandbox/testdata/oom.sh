#!/bin/sh
# Takes one event and asks for a 300 MB buffer (dd fills it at once): far
# over its 128 MB limit.
set -eu
curl -sS -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
dd if=/dev/zero of=/dev/null bs=300M count=1
echo "still alive"

#!/bin/sh
# Takes one event, prints a line and exits with status 3 without answering.
set -eu
curl -sS -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
echo "about to crash"
exit 3

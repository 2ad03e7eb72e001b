#!/bin/sh
# Holds each invocation for as many seconds as the event says (a bare
# number, e.g. 0.2), then answers with the event and the invocation's start
# and end in Unix nanoseconds (`date +%s%N`), so that a test can tell how
# many invocations ran at the same instant. The sandboxes share the host's
# clock, whichever node runs them.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  START=$(date +%s%N)
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  sleep "$EVENT"
  END=$(date +%s%N)
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" \
    -d "{\"held\":$EVENT,\"start\":$START,\"end\":$END}"
done

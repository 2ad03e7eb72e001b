#!/bin/sh
# Initialises for INIT_SLEEP seconds, then echoes events.
set -eu
echo "init starts"
sleep "${INIT_SLEEP:-0}"
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "$EVENT"
done

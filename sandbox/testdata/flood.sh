#!/bin/sh
# Floods its output with FLOOD_MB megabytes of short lines on each event,
# then answers.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -o /dev/null -LD "$HEADERS" "$API/invocation/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  yes 0123456789abcdef | head -c "$((FLOOD_MB * 1048576))"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d '"flooded"'
done

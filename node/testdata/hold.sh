#!/bin/sh
# Holds each invocation for as many seconds as the event says (a bare
# number, e.g. 0.5), then answers with the event and the worker's host name.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  sleep "$EVENT"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "{\"held\":$EVENT}"
done

#!/bin/sh
# Writes ten numbered lines per invocation ("logger K I", the event being
# the bare number K) to stdout, then answers K, so that a test can tell
# which lines of which invocation the log store kept.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  for i in 1 2 3 4 5 6 7 8 9 10; do echo "logger $EVENT $i"; done
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "$EVENT"
done

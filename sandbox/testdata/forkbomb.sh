#!/bin/sh
# On each event starts FORKS sleeping processes that outlive it, then
# answers.
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -o /dev/null -LD "$HEADERS" "$API/invocation/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  n=0
  while [ "$n" -lt "$FORKS" ]; do sleep 600 & n=$((n + 1)); done
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "{\"started\":$n}"
done

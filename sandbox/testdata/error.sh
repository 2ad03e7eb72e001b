#!/bin/sh
# Reports every event as a function error through /invocation/{id}/error.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -o /dev/null -LD "$HEADERS" "$API/invocation/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  curl -sS -o /dev/null -X POST -H "Lambda-Runtime-Function-Error-Type: Handled.MyError" \
    "$API/invocation/$REQUEST_ID/error" -d '{"errorType":"MyError","errorMessage":"something broke"}'
done

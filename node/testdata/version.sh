#!/bin/sh
# A shell runtime that answers every event with what it runs as: its code's
# version file, AWS_LAMBDA_FUNCTION_VERSION, the invoked function ARN and
# its log stream.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
CODE=$(cat /var/task/version 2>/dev/null || echo none)
while true; do
  HEADERS="$(mktemp)"
  curl -sS -o /dev/null -LD "$HEADERS" "$API/invocation/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  ARN=$(grep -Fi Lambda-Runtime-Invoked-Function-Arn "$HEADERS" | tr -d '[:space:]' | cut -d: -f2-)
  rm -f "$HEADERS"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" \
    -d "{\"code\":\"$CODE\",\"version\":\"$AWS_LAMBDA_FUNCTION_VERSION\",\"arn\":\"$ARN\",\"stream\":\"$AWS_LAMBDA_LOG_STREAM_NAME\"}"
done

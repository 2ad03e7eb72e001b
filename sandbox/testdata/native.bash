#!/bin/bash
# A bash custom runtime (bash syntax on purpose) that runs a native program
# shipped beside it for each event and answers with its output.
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
declare -a seen=()
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  seen+=("$REQUEST_ID")
  if [[ -s /etc/pki/tls/certs/ca-bundle.crt ]]; then certs=true; else certs=false; fi
  OUT=$("$LAMBDA_TASK_ROOT/native" "$EVENT")
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" \
    -d "{\"native\":$OUT,\"certs\":$certs,\"count\":${#seen[@]}}"
done

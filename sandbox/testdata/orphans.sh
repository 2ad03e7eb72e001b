#!/bin/sh
# Leaves orphans behind on every event (subshells whose children outlive
# them) and answers with the number of zombies it sees.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -o /dev/null -LD "$HEADERS" "$API/invocation/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  for i in 1 2 3 4 5 6 7 8 9 10; do (true & ) ; done
  zombies=$(cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == "Z"' | wc -l)
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "{\"zombies\":$zombies,\"ppid\":$PPID}"
done

#!/bin/sh
# A shell runtime that does what each event says: an event containing
# "crash" makes it exit with status 3 without answering, "sleep" makes it
# never answer, "error" reports a function error; any other event is echoed
# back with the code's version file, $GREETING and, when a layer gives
# /opt/layer.txt, its text.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
VERSION=$(cat /var/task/version 2>/dev/null || echo none)
LAYER=""
if [ -f /opt/layer.txt ]; then LAYER=",\"layer\":\"$(cat /opt/layer.txt)\""; fi
echo "init version $VERSION"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  echo "event: $EVENT"
  case "$EVENT" in
  *crash*)
    echo "about to crash"
    exit 3 ;;
  *sleep*)
    echo "sleeping"
    sleep 600 ;;
  *error*)
    curl -sS -o /dev/null -X POST -H "Lambda-Runtime-Function-Error-Type: Unhandled" \
      "$API/invocation/$REQUEST_ID/error" -d '{"errorType":"MyError","errorMessage":"something broke"}'
    continue ;;
  esac
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" \
    -d "{\"echo\":$EVENT,\"version\":\"$VERSION\"$LAYER,\"greeting\":\"${GREETING:-}\"}"
done

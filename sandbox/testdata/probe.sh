#!/bin/sh
# Answers each event with what the sandbox can see and do, as JSON. The event
# is a loopback port on the host that must NOT be reachable from here.
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
yesno() { if "$@" >/dev/null 2>&1; then echo true; else echo false; fi; }
while true; do
  HEADERS="$(mktemp)"
  PORT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  uid=$(id -u)
  root_w=$(yesno touch /probe)
  task_w=$(yesno touch /var/task/probe)
  tmp_w=$(yesno touch /tmp/probe)
  pids=$(ls /proc | grep -c '^[0-9][0-9]*$')
  ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ',')
  routes=$(tail -n +2 /proc/net/route | wc -l)
  host=$(yesno curl -sS --max-time 1 "http://127.0.0.1:$PORT/")
  caps=$(grep CapEff /proc/self/status | cut -f2)
  nnp=$(grep NoNewPrivs /proc/self/status | cut -f2)
  tmpsize=$(df -k /tmp | tail -1 | awk '{print $2}')
  memkb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  cpus=$(grep -c '^processor' /proc/cpuinfo)
  up=$(cut -d. -f1 /proc/uptime)
  body="{\"uid\":$uid,\"root_writable\":$root_w,\"task_writable\":$task_w,\"tmp_writable\":$tmp_w,\"pids\":$pids,\"ifaces\":\"$ifaces\",\"routes\":$routes,\"host_reachable\":$host,\"cap_eff\":\"$caps\",\"no_new_privs\":$nnp,\"tmp_kb\":$tmpsize,\"mem_kb\":$memkb,\"cpus\":$cpus,\"uptime\":$up}"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "$body"
done

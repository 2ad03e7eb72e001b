#!/bin/sh
# Reports an init error, then lingers without exiting.
set -eu
echo "init fails"
curl -sS -o /dev/null -X POST -H "Lambda-Runtime-Function-Error-Type: Runtime.ConfigError" \
  "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/init/error" \
  -d '{"errorType":"ConfigError","errorMessage":"missing setting"}'
sleep 600

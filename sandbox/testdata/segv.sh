#!/bin/sh
# Takes one event and dies of SIGSEGV.
curl -sS -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
kill -SEGV $$

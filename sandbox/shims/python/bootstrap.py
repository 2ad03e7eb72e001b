# nimbus's Python runtime: loads the function's handler and serves it over
# the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API). Standard library only.
#
#   init:  sys.path, logging, import the handler's module, find the
#          function; a failure is posted to /init/error with Lambda's names
#          (Runtime.ImportModuleError, Runtime.HandlerNotFound,
#          Runtime.UserCodeSyntaxError, Runtime.MalformedHandlerName) and
#          the process exits.
#   loop:  GET /next, call handler(event, context), POST the result to
#          /response, or the exception to /error as
#          {"errorMessage", "errorType", "requestId", "stackTrace"}.

import http.client
import json
import logging
import os
import sys
import time
import traceback

TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")

# sys.path as Lambda's: the code, then the layers' folders, then the
# standard library (the shim's own folder is not on it).
_runtime_dir = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != _runtime_dir]
for _p in reversed([TASK_ROOT, "/opt/python/lib/python%d.%d/site-packages" % sys.version_info[:2], "/opt/python"]):
    sys.path.insert(0, _p)

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"


class _API:
    """One kept-alive connection to the Runtime API."""

    def __init__(self, addr):
        host, _, port = addr.rpartition(":")
        self.host, self.port = host, int(port)
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port)
            try:
                self.conn.request(method, BASE + path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


api = _API(API)


class LambdaContext:
    """The context object Lambda passes to a Python handler."""

    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(int(self._deadline_ms - time.time() * 1000), 0)

    def __repr__(self):
        return "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,function_name=%s,memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s,client_context=%s,identity=%s])" % (
            self.aws_request_id, self.log_group_name, self.log_stream_name, self.function_name,
            self.memory_limit_in_mb, self.function_version, self.invoked_function_arn,
            self.client_context, self.identity)


class _Object:
    """A JSON object with its keys as attributes (client_context, identity)."""

    def __init__(self, d, **fields):
        for k, v in fields.items():
            setattr(self, k, d.get(v) if isinstance(d, dict) else None)

    def __repr__(self):
        return repr(self.__dict__)


def _client_context(raw):
    if not raw:
        return None
    try:
        d = json.loads(raw)
    except ValueError:
        return None
    cc = _Object(d, custom="custom", env="env")
    cc.client = _Object(d.get("client") or {}, installation_id="installation_id", app_title="app_title",
                        app_version_name="app_version_name", app_version_code="app_version_code",
                        app_package_name="app_package_name")
    return cc


def _identity(raw):
    if not raw:
        return None
    try:
        d = json.loads(raw)
    except ValueError:
        return None
    return _Object(d, cognito_identity_id="cognitoIdentityId", cognito_identity_pool_id="cognitoIdentityPoolId")


# Logging in Lambda's format: [LEVEL]\t<time>Z\t<request id>\t<message>.
_current_request_id = ""


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        return True


class _LambdaFormatter(logging.Formatter):
    converter = time.gmtime

    def __init__(self):
        super().__init__("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S")


def _setup_logging():
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_LambdaFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        root.setLevel(level)


def _stack(tb):
    return traceback.format_list(traceback.extract_tb(tb))


def _error_body(exc, request_id, error_type=None, stack=None):
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": stack if stack is not None else _stack(exc.__traceback__),
    }


def _log_error(body):
    # Lambda writes a failed invocation's error to the log as one record.
    lines = "".join(body["stackTrace"])
    msg = "[ERROR] %s: %s\nTraceback (most recent call last):\n%s" % (body["errorType"], body["errorMessage"], lines)
    sys.stdout.write(msg.replace("\n", "\r") + "\n")


class _InitError(Exception):
    def __init__(self, error_type, message, stack=None):
        super().__init__(message)
        self.error_type, self.message, self.stack = error_type, message, stack or []


def _load_handler(spec):
    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError as e:
        raise _InitError("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (spec, e))
    modname = modname.replace("/", ".")
    if modname.startswith("."):
        raise _InitError("Runtime.MalformedHandlerName", "Bad handler '%s': relative module names are not supported" % spec)
    import importlib
    try:
        mod = importlib.import_module(modname)
    except SyntaxError as e:
        raise _InitError("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), _stack(e.__traceback__))
    except ImportError as e:
        raise _InitError("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e), _stack(e.__traceback__))
    except Exception as e:
        raise _InitError(type(e).__name__, "%s" % e, _stack(e.__traceback__))
    fn = getattr(mod, fname, None)
    if fn is None:
        raise _InitError("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))
    if not callable(fn):
        raise _InitError("Runtime.HandlerNotFound", "Handler '%s' on module '%s' is not callable" % (fname, modname))
    return fn


def _post_init_error(err):
    body = {"errorMessage": err.message, "errorType": err.error_type, "requestId": "", "stackTrace": err.stack}
    _log_error(body)
    api.request("POST", "/init/error", json.dumps(body), {"Lambda-Runtime-Function-Error-Type": err.error_type})


def main():
    global _current_request_id
    _setup_logging()
    try:
        handler = _load_handler(os.environ.get("_HANDLER", ""))
    except _InitError as e:
        _post_init_error(e)
        sys.exit(1)
    while True:
        resp, event = api.request("GET", "/invocation/next")
        if resp.status != 200:
            sys.stderr.write("runtime API /next answered %d: %s\n" % (resp.status, event[:200]))
            sys.exit(1)
        rid = resp.getheader("Lambda-Runtime-Aws-Request-Id", "")
        _current_request_id = rid
        trace = resp.getheader("Lambda-Runtime-Trace-Id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        ctx = LambdaContext(
            rid, int(resp.getheader("Lambda-Runtime-Deadline-Ms", "0") or 0),
            resp.getheader("Lambda-Runtime-Invoked-Function-Arn", ""),
            _client_context(resp.getheader("Lambda-Runtime-Client-Context")),
            _identity(resp.getheader("Lambda-Runtime-Cognito-Identity")))
        try:
            result = handler(json.loads(event) if event else None, ctx)
        except Exception as e:
            body = _error_body(e, rid)
            _log_error(body)
            api.request("POST", "/invocation/%s/error" % rid, json.dumps(body), {"Lambda-Runtime-Function-Error-Type": body["errorType"]})
            continue
        try:
            out = json.dumps(result)
        except (TypeError, ValueError) as e:
            body = _error_body(e, rid, "Runtime.MarshalError", [])
            body["errorMessage"] = "Unable to marshal response: %s" % e
            _log_error(body)
            api.request("POST", "/invocation/%s/error" % rid, json.dumps(body), {"Lambda-Runtime-Function-Error-Type": body["errorType"]})
            continue
        # Over 6 MB the API answers 413 and fails the invocation itself.
        api.request("POST", "/invocation/%s/response" % rid, out, {"Content-Type": "application/json"})


if __name__ == "__main__":
    main()

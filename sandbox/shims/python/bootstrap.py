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

import json
import os
import socket
import sys
import time

# http.client (which imports ssl) and traceback (textwrap) cost a cold start
# tens of milliseconds: the shim speaks HTTP/1.1 itself, and imports
# traceback and logging only when they are needed.

TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")

# sys.path as Lambda's: the code, then the layers' folders, then the
# standard library (the shim's own folder is not on it).
_runtime_dir = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != _runtime_dir]
for _p in reversed([TASK_ROOT, "/opt/python/lib/python%d.%d/site-packages" % sys.version_info[:2], "/opt/python"]):
    sys.path.insert(0, _p)

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"


class _Response:
    def __init__(self, status, headers):
        self.status, self.headers = status, headers

    def getheader(self, name, default=None):
        return self.headers.get(name.lower(), default)


class _API:
    """One kept-alive HTTP/1.1 connection to the Runtime API."""

    def __init__(self, addr):
        host, _, port = addr.rpartition(":")
        self.addr = (host, int(port))
        self.sock = None
        self.rfile = None

    def _connect(self):
        self.sock = socket.create_connection(self.addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def _close(self):
        try:
            if self.sock is not None:
                self.sock.close()
        finally:
            self.sock = self.rfile = None

    def request(self, method, path, body=None, headers=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        body = body or b""
        head = "%s %s%s HTTP/1.1\r\nHost: runtime\r\nContent-Length: %d\r\n" % (method, BASE, path, len(body))
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        data = (head + "\r\n").encode("latin-1") + body
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self._connect()
                self.sock.sendall(data)
                return self._read()
            except OSError:
                self._close()
                if attempt:
                    raise

    def _read(self):
        line = self.rfile.readline(65537)
        if not line:
            raise OSError("connection closed")
        status = int(line.split(None, 2)[1])
        headers = {}
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline(65537)
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            data = b"".join(parts)
        else:
            data = self.rfile.read(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self._close()
        return _Response(status, headers), data


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
# The root logger is set up the moment the function's code imports logging
# (a meta path finder sees the import first): a function that never logs
# never pays for the module.
_current_request_id = ""
_logging_ready = False


class _LoggingHook:
    """Finds logging for the function's first import of it, with a loader
    that sets the root logger up once the module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder
        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SetupAfter(spec.loader)
        return spec


class _SetupAfter:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _setup_logging()


def _setup_logging():
    global _logging_ready
    if _logging_ready or "logging" not in sys.modules:
        return
    _logging_ready = True
    import logging

    class _RequestIdFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _current_request_id
            return True

    formatter = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        root.setLevel(level)


def _stack(tb):
    import traceback
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


def _prime():
    """In a primed shell this process started before its function was
    known, with the platform's environment and _NIMBUS_PRIME set: wait for
    the function's environment and put it in place of this one, before
    anything of the function's is loaded."""
    if os.environ.get("_NIMBUS_PRIME") != "1":
        return
    resp, body = api.request("GET", "/nimbus/prime")
    if resp.status != 200:
        sys.stderr.write("runtime API /nimbus/prime answered %d: %r\n" % (resp.status, body[:200]))
        sys.exit(1)
    env = {}
    for kv in body.split(b"\0"):
        k, sep, v = kv.partition(b"=")
        if sep:
            env[os.fsdecode(k)] = os.fsdecode(v)
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    # The working directory was /var/task before the code was mounted on
    # it: enter the mount.
    os.chdir(TASK_ROOT)
    # /var/task and the layers are mounted now: forget what the imports
    # so far found (or did not find) there. (Not importlib.invalidate_caches,
    # which imports importlib.metadata: 40 ms.)
    sys.path_importer_cache.clear()


def main():
    global _current_request_id
    _prime()
    sys.meta_path.insert(0, _LoggingHook())
    try:
        handler = _load_handler(os.environ.get("_HANDLER", ""))
    except _InitError as e:
        _post_init_error(e)
        sys.exit(1)
    _setup_logging()
    while True:
        resp, event = api.request("GET", "/invocation/next")
        if resp.status != 200:
            sys.stderr.write("runtime API /next answered %d: %r\n" % (resp.status, event[:200]))
            sys.exit(1)
        rid = resp.getheader("Lambda-Runtime-Aws-Request-Id", "")
        _current_request_id = rid
        _setup_logging()
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

import json
import logging
import os
import sys
import time

logger = logging.getLogger()
logger.setLevel(logging.INFO)

count = 0  # module state: kept while the sandbox stays warm


def handler(event, context):
    global count
    count += 1
    logger.info("got %s", json.dumps(event))
    print("printed line")
    return {
        "event": event,
        "count": count,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "client_context": context.client_context is not None,
        "identity": context.identity is not None,
        "sys_path": sys.path[:3],
        "exec_env": os.environ.get("AWS_EXECUTION_ENV"),
        "version": "%d.%d" % sys.version_info[:2],
    }


def fail(event, context):
    raise ValueError("bad value: " + str(event.get("n")))


def sleep(event, context):
    time.sleep(event["seconds"])
    return "woke"


def unserializable(event, context):
    return {"s": {1, 2}}


def environ(event, context):
    return {
        "value": os.environ.get(event["name"]),
        "prime": os.environ.get("_NIMBUS_PRIME"),
        "tz": time.strftime("%Z", time.localtime(0)),
        "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "relative": os.path.exists("app.py"),
    }


def loadlib(event, context):
    import ctypes
    ctypes.CDLL(event["lib"])
    return "loaded"

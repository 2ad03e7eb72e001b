"""Drives a node's REST gateway with Debian's boto3, as a Lambda user would.

Usage: gateway_boto3.py ENDPOINT HELLO_ZIP SMALL_ZIP
Exits non-zero (with a traceback) on the first check that fails.
"""
import base64
import json
import sys

import boto3
import botocore.config

endpoint, hello_zip, small_zip = sys.argv[1:4]
client = boto3.client(
    "lambda",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="any",
    aws_secret_access_key="any",
    # One attempt: a throttle must reach the test, not be retried away.
    config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
)
role = "arn:aws:iam::000000000000:role/any"
hello = open(hello_zip, "rb").read()
small = open(small_zip, "rb").read()

# create, then invoke with the log tail
created = client.create_function(
    FunctionName="hello", Runtime="provided", Handler="bootstrap", Role=role,
    Code={"ZipFile": hello}, MemorySize=128, Timeout=10,
    Environment={"Variables": {"GREETING": "hi"}},
)
assert created["ResponseMetadata"]["HTTPStatusCode"] == 201, created
assert created["State"] == "Active" and created["LastUpdateStatus"] == "Successful", created
assert created["Version"] == "$LATEST", created
assert created["Role"] == role, created
assert client.get_function_configuration(FunctionName="hello")["Role"] == role
assert len(base64.b64decode(created["CodeSha256"])) == 32, created["CodeSha256"]
print("created", created["FunctionArn"])

out = client.invoke(FunctionName="hello", Payload=json.dumps({"name": "boto3"}), LogType="Tail")
assert out["StatusCode"] == 200, out
assert out["ExecutedVersion"] == "$LATEST", out
body = json.loads(out["Payload"].read())
assert body["message"] == "Hello, boto3!", body
log = base64.b64decode(out["LogResult"]).decode()
assert "START RequestId:" in log and "REPORT RequestId:" in log and "greeting boto3" in log, log
print("invoked, log tail of", len(log), "bytes")

dry = client.invoke(FunctionName="hello", InvocationType="DryRun")
assert dry["StatusCode"] == 204, dry

conf = client.get_function_configuration(FunctionName="hello")
assert conf["Environment"]["Variables"] == {"GREETING": "hi"}, conf
updated = client.update_function_configuration(FunctionName="hello", MemorySize=256, RevisionId=conf["RevisionId"])
assert updated["MemorySize"] == 256 and updated["RevisionId"] != conf["RevisionId"], updated
try:
    client.update_function_configuration(FunctionName="hello", Timeout=5, RevisionId=conf["RevisionId"])
    raise AssertionError("a stale RevisionId was accepted")
except client.exceptions.PreconditionFailedException as e:
    print("stale RevisionId:", e.response["Error"]["Code"])

# the server validates ephemeral storage itself, not only the SDK
unvalidated = boto3.client(
    "lambda", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id="any", aws_secret_access_key="any",
    config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}, parameter_validation=False),
)
for size in (100, 20000):
    try:
        unvalidated.update_function_configuration(FunctionName="hello", EphemeralStorage={"Size": size})
        raise AssertionError("an ephemeral storage of %d MB was accepted" % size)
    except unvalidated.exceptions.InvalidParameterValueException as e:
        print("ephemeral storage %d:" % size, e.response["Error"]["Message"])
assert client.get_function_configuration(FunctionName="hello")["EphemeralStorage"] == {"Size": 512}

# errors arrive as the SDK's own exception classes
try:
    client.get_function(FunctionName="missing")
    raise AssertionError("got a missing function")
except client.exceptions.ResourceNotFoundException as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    print("missing:", e.response["Error"]["Message"])
try:
    client.create_function(FunctionName="hello", Runtime="provided", Role=role, Code={"ZipFile": hello})
    raise AssertionError("created a function twice")
except client.exceptions.ResourceConflictException:
    pass
try:
    client.update_function_configuration(FunctionName="hello", Timeout=1000)
    raise AssertionError("accepted a timeout of 1000 s")
except client.exceptions.InvalidParameterValueException as e:
    print("1000 s:", e.response["Error"]["Message"])
try:
    client.create_function(FunctionName="notzip", Runtime="provided", Role=role, Code={"ZipFile": b"not a zip"})
    raise AssertionError("accepted a zip that is not one")
except client.exceptions.InvalidParameterValueException:
    pass

# reserved concurrency 0 throttles: TooManyRequestsException with its Reason
client.put_function_concurrency(FunctionName="hello", ReservedConcurrentExecutions=0)
assert client.get_function_concurrency(FunctionName="hello")["ReservedConcurrentExecutions"] == 0
try:
    client.invoke(FunctionName="hello", Payload=b"{}")
    raise AssertionError("a function with reserved concurrency 0 ran")
except client.exceptions.TooManyRequestsException as e:
    assert e.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded", e.response
    assert e.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after"), e.response
    print("throttled:", e.response["Reason"])
client.delete_function_concurrency(FunctionName="hello")
assert "ReservedConcurrentExecutions" not in client.get_function_concurrency(FunctionName="hello")
assert client.invoke(FunctionName="hello", Payload=b"{}")["StatusCode"] == 200

# a paginator over 60 functions (Lambda pages at most 50)
for i in range(60):
    client.create_function(FunctionName="page-%02d" % i, Runtime="provided", Role=role, Code={"ZipFile": small})
pages = list(client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 25}))
names = [f["FunctionName"] for p in pages for f in p["Functions"]]
assert len(pages) == 3, [len(p["Functions"]) for p in pages]
assert names == sorted(["page-%02d" % i for i in range(60)] + ["hello"]), names
default_pages = list(client.get_paginator("list_functions").paginate())
assert [len(p["Functions"]) for p in default_pages] == [50, 11], [len(p["Functions"]) for p in default_pages]
settings = client.get_account_settings()
assert settings["AccountUsage"]["FunctionCount"] == 61, settings
print("listed", len(names), "functions in", len(pages), "pages")

client.delete_function(FunctionName="page-00")
try:
    client.get_function(FunctionName="page-00")
    raise AssertionError("a deleted function is still there")
except client.exceptions.ResourceNotFoundException:
    pass
print("boto3 ok")

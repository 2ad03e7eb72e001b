# Event source mappings through boto3 (Debian's python3-boto3): create on a
# queue, get, update, list (with the paginator and by source), delete, and
# the errors as the SDK's exception classes. (Debian 12's boto3 predates
# ScalingConfig, which the gateway takes too.)
import sys

import boto3

url, zip_path, queue_arn = sys.argv[1], sys.argv[2], sys.argv[3]
lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1")
lam.create_function(FunctionName="esmf", Runtime="provided", Handler="bootstrap",
                    Role="arn:aws:iam::000000000000:role/any", Code={"ZipFile": open(zip_path, "rb").read()})

m = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName="esmf", BatchSize=5,
                                    FunctionResponseTypes=["ReportBatchItemFailures"])
assert m["State"] == "Creating", m
assert m["BatchSize"] == 5 and m["EventSourceArn"] == queue_arn, m
assert m["FunctionArn"].endswith(":function:esmf"), m
assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"], m
uuid = m["UUID"]

g = lam.get_event_source_mapping(UUID=uuid)
assert g["State"] == "Enabled" and g["UUID"] == uuid, g
assert g["LastModified"] is not None, g

u = lam.update_event_source_mapping(UUID=uuid, BatchSize=8, Enabled=False, FunctionResponseTypes=[])
assert u["BatchSize"] == 8 and u["State"] == "Disabled" and u["FunctionResponseTypes"] == [], u

second = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName="esmf", Enabled=False)
assert second["State"] == "Disabled" and second["BatchSize"] == 10, second

seen = []
for page in lam.get_paginator("list_event_source_mappings").paginate(FunctionName="esmf", PaginationConfig={"PageSize": 1}):
    seen += [x["UUID"] for x in page["EventSourceMappings"]]
assert sorted(seen) == sorted([uuid, second["UUID"]]), seen
by_source = lam.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]
assert len(by_source) == 2, by_source
assert lam.list_event_source_mappings(EventSourceArn=queue_arn + "x")["EventSourceMappings"] == []


def expect(exc, fn, **kw):
    try:
        fn(**kw)
    except exc as e:
        print("raised", type(e).__name__, e.response["Error"]["Message"])
        return
    raise AssertionError(f"{fn.__name__} {kw} raised nothing, want {exc}")


expect(lam.exceptions.ResourceNotFoundException, lam.get_event_source_mapping, UUID="00000000-0000-4000-8000-000000000000")
expect(lam.exceptions.InvalidParameterValueException, lam.create_event_source_mapping,
       EventSourceArn=queue_arn.rsplit(":", 1)[0] + ":nosuchqueue", FunctionName="esmf")
expect(lam.exceptions.InvalidParameterValueException, lam.create_event_source_mapping,
       EventSourceArn=queue_arn, FunctionName="esmf", BatchSize=20000)
expect(lam.exceptions.InvalidParameterValueException, lam.create_event_source_mapping,
       EventSourceArn=queue_arn, FunctionName="esmf", FunctionResponseTypes=["Bogus"])
expect(lam.exceptions.ResourceNotFoundException, lam.create_event_source_mapping,
       EventSourceArn=queue_arn, FunctionName="nosuchfunction")

d = lam.delete_event_source_mapping(UUID=uuid)
assert d["State"] == "Deleting" and d["UUID"] == uuid, d
expect(lam.exceptions.ResourceNotFoundException, lam.get_event_source_mapping, UUID=uuid)
lam.delete_event_source_mapping(UUID=second["UUID"])
assert lam.list_event_source_mappings()["EventSourceMappings"] == []
print("esm boto3 ok")

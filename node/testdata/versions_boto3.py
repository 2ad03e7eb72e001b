"""Drives versions, aliases, function URL configuration and event invoke
configuration through a node's REST gateway with Debian's boto3.

Usage: versions_boto3.py ENDPOINT ZIP_ONE ZIP_TWO
Exits non-zero (with a traceback) on the first check that fails.
"""
import json
import sys

import boto3
import botocore.config

endpoint, zip_one, zip_two = sys.argv[1:4]
client = boto3.client(
    "lambda", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id="any", aws_secret_access_key="any",
    config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
)
role = "arn:aws:iam::000000000000:role/any"
one = open(zip_one, "rb").read()
two = open(zip_two, "rb").read()


def raises(exc, fn, **kw):
    try:
        fn(**kw)
    except exc as e:
        return e
    raise AssertionError("%s(%s) did not raise %s" % (fn.__name__, kw, exc.__name__))


# Create with Publish: version 1 at once.
created = client.create_function(FunctionName="vf", Runtime="provided", Handler="bootstrap", Role=role,
                                  Code={"ZipFile": one}, Publish=True, Description="one")
assert created["Version"] == "1", created
assert created["FunctionArn"].endswith(":function:vf:1"), created["FunctionArn"]

# publish_version with the preconditions.
latest = client.get_function_configuration(FunctionName="vf")
assert latest["Version"] == "$LATEST", latest
unchanged = client.publish_version(FunctionName="vf")
assert unchanged["Version"] == "1", unchanged  # $LATEST unchanged: the newest version
client.update_function_code(FunctionName="vf", ZipFile=two)
raises(client.exceptions.PreconditionFailedException, client.publish_version, FunctionName="vf", RevisionId=latest["RevisionId"])
raises(client.exceptions.PreconditionFailedException, client.publish_version, FunctionName="vf", CodeSha256=latest["CodeSha256"])
now = client.get_function_configuration(FunctionName="vf")
v2 = client.publish_version(FunctionName="vf", CodeSha256=now["CodeSha256"], RevisionId=now["RevisionId"], Description="two")
assert v2["Version"] == "2" and v2["Description"] == "two", v2
assert v2["CodeSha256"] != created["CodeSha256"], v2

versions = client.list_versions_by_function(FunctionName="vf")["Versions"]
assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"], versions
pages = list(client.get_paginator("list_versions_by_function").paginate(FunctionName="vf", PaginationConfig={"PageSize": 1}))
assert [v["Version"] for p in pages for v in p["Versions"]] == ["$LATEST", "1", "2"], pages
everything = [f["Version"] for p in client.get_paginator("list_functions").paginate(FunctionVersion="ALL", PaginationConfig={"PageSize": 2})
              for f in p["Functions"] if f["FunctionName"] == "vf"]
assert everything == ["$LATEST", "1", "2"], everything
got = client.get_function(FunctionName="vf", Qualifier="1")
assert got["Configuration"]["Version"] == "1" and got["Configuration"]["Description"] == "one", got

# Aliases with weights.
alias = client.create_alias(FunctionName="vf", Name="live", FunctionVersion="1",
                            RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}}, Description="canary")
assert alias["AliasArn"].endswith(":function:vf:live"), alias
assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.25}, alias
raises(client.exceptions.ResourceConflictException, client.create_alias, FunctionName="vf", Name="live", FunctionVersion="1")
raises(client.exceptions.InvalidParameterValueException, client.create_alias, FunctionName="vf", Name="bad",
       FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}})
raises(client.exceptions.InvalidParameterValueException, client.create_alias, FunctionName="vf", Name="bad",
       FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"$LATEST": 0.5}})
raises(client.exceptions.ResourceNotFoundException, client.create_alias, FunctionName="vf", Name="bad", FunctionVersion="9")
raises(client.exceptions.ResourceConflictException, client.delete_function, FunctionName="vf", Qualifier="2")
got = client.get_alias(FunctionName="vf", Name="live")
assert got["RevisionId"] == alias["RevisionId"] and got["Description"] == "canary", got
raises(client.exceptions.PreconditionFailedException, client.update_alias, FunctionName="vf", Name="live",
       FunctionVersion="2", RevisionId="00000000-0000-8000-8000-000000000000")
updated = client.update_alias(FunctionName="vf", Name="live", FunctionVersion="2", RoutingConfig={"AdditionalVersionWeights": {}},
                              RevisionId=got["RevisionId"])
assert updated["FunctionVersion"] == "2" and "RoutingConfig" not in updated, updated
assert updated["RevisionId"] != got["RevisionId"], updated
client.create_alias(FunctionName="vf", Name="dev", FunctionVersion="$LATEST")
names = [a["Name"] for a in client.list_aliases(FunctionName="vf")["Aliases"]]
assert names == ["dev", "live"], names
names = [a["Name"] for a in client.list_aliases(FunctionName="vf", FunctionVersion="2")["Aliases"]]
assert names == ["live"], names

# Invoke by alias, version and qualified ARN.
out = client.invoke(FunctionName="vf", Qualifier="live", Payload=b"{}")
assert out["ExecutedVersion"] == "2", out
assert json.loads(out["Payload"].read())["echo"] == {}, out
out = client.invoke(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:vf:1", Payload=b"{}")
assert out["ExecutedVersion"] == "1", out
assert json.loads(out["Payload"].read())["version"] == "one"
out = client.invoke(FunctionName="vf:dev", Payload=b"{}")
assert out["ExecutedVersion"] == "$LATEST", out
raises(client.exceptions.ResourceNotFoundException, client.invoke, FunctionName="vf", Qualifier="nope", Payload=b"{}")
raises(client.exceptions.ResourceNotFoundException, client.invoke, FunctionName="vf", Qualifier="7", Payload=b"{}")

# Function URL configuration.
url = client.create_function_url_config(FunctionName="vf", Qualifier="live", AuthType="NONE",
                                        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET"], "MaxAge": 60})
assert "/lambda-url/" in url["FunctionUrl"] and url["FunctionArn"].endswith(":vf:live"), url
raises(client.exceptions.ResourceConflictException, client.create_function_url_config, FunctionName="vf", Qualifier="live", AuthType="NONE")
raises(client.exceptions.InvalidParameterValueException, client.create_function_url_config, FunctionName="vf", AuthType="AWS_IAM")
raises(client.exceptions.InvalidParameterValueException, client.create_function_url_config, FunctionName="vf", Qualifier="1", AuthType="NONE")
raises(client.exceptions.ResourceNotFoundException, client.create_function_url_config, FunctionName="vf", Qualifier="gone", AuthType="NONE")
got = client.get_function_url_config(FunctionName="vf", Qualifier="live")
assert got["FunctionUrl"] == url["FunctionUrl"] and got["Cors"]["AllowOrigins"] == ["https://app.example"], got
upd = client.update_function_url_config(FunctionName="vf", Qualifier="live", Cors={"AllowOrigins": ["*"]})
assert upd["FunctionUrl"] == url["FunctionUrl"] and upd["Cors"]["AllowOrigins"] == ["*"], upd
client.create_function_url_config(FunctionName="vf", AuthType="NONE")
urls = client.list_function_url_configs(FunctionName="vf")["FunctionUrlConfigs"]
assert len(urls) == 2, urls
client.delete_function_url_config(FunctionName="vf")
raises(client.exceptions.ResourceNotFoundException, client.get_function_url_config, FunctionName="vf")

# Event invoke configuration.
put = client.put_function_event_invoke_config(FunctionName="vf", MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120)
assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 120, put
assert put["FunctionArn"].endswith(":vf:$LATEST"), put
upd = client.update_function_event_invoke_config(FunctionName="vf", MaximumRetryAttempts=0)
assert upd["MaximumRetryAttempts"] == 0 and upd["MaximumEventAgeInSeconds"] == 120, upd
got = client.get_function_event_invoke_config(FunctionName="vf")
assert got["MaximumRetryAttempts"] == 0, got
listed = client.list_function_event_invoke_configs(FunctionName="vf")["FunctionEventInvokeConfigs"]
assert len(listed) == 1, listed
raises(client.exceptions.InvalidParameterValueException, client.put_function_event_invoke_config, FunctionName="vf", MaximumRetryAttempts=5)
client.delete_function_event_invoke_config(FunctionName="vf")
raises(client.exceptions.ResourceNotFoundException, client.get_function_event_invoke_config, FunctionName="vf")
assert client.list_function_event_invoke_configs(FunctionName="vf")["FunctionEventInvokeConfigs"] == []

# Deleting an alias, a version, then the function with everything.
client.delete_alias(FunctionName="vf", Name="dev")
client.update_alias(FunctionName="vf", Name="live", FunctionVersion="2")
client.delete_function(FunctionName="vf", Qualifier="1")
assert [v["Version"] for v in client.list_versions_by_function(FunctionName="vf")["Versions"]] == ["$LATEST", "2"]
client.delete_function(FunctionName="vf")
raises(client.exceptions.ResourceNotFoundException, client.get_alias, FunctionName="vf", Name="live")
print("versions boto3 ok")

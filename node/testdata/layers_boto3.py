# Layers and a function's description through boto3 (Debian's
# python3-boto3): publish layer versions, get and list them (by compatible
# runtime too), create a function with a layer and a description, invoke it
# (the layer's file is under /opt), change its layers and description with
# update_function_configuration, publish a version (its description
# defaults to the function's), delete a layer version, and the errors as
# the SDK's exception classes.
import io
import json
import sys
import zipfile

import boto3

url, zip_path = sys.argv[1], sys.argv[2]
lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1")


def layer_zip(text):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("layer.txt", text)
    return buf.getvalue()


v1 = lam.publish_layer_version(LayerName="shared", Description="first", Content={"ZipFile": layer_zip("from-layer-1")},
                               CompatibleRuntimes=["provided", "python3.13"])
assert v1["Version"] == 1 and v1["LayerVersionArn"].endswith(":layer:shared:1"), v1
assert v1["LayerArn"].endswith(":layer:shared") and v1["Content"]["CodeSize"] > 0, v1
assert v1["Description"] == "first" and v1["CompatibleRuntimes"] == ["provided", "python3.13"], v1
v2 = lam.publish_layer_version(LayerName="shared", Content={"ZipFile": layer_zip("from-layer-2")}, CompatibleRuntimes=["nodejs20.x"])
assert v2["Version"] == 2, v2

got = lam.get_layer_version(LayerName="shared", VersionNumber=1)
assert got["Content"]["CodeSha256"] == v1["Content"]["CodeSha256"] and got["Description"] == "first", got
versions = lam.list_layer_versions(LayerName="shared")["LayerVersions"]
assert [v["Version"] for v in versions] == [2, 1], versions
versions = lam.list_layer_versions(LayerName="shared", CompatibleRuntime="python3.13")["LayerVersions"]
assert [v["Version"] for v in versions] == [1], versions
seen = []
for page in lam.get_paginator("list_layer_versions").paginate(LayerName="shared", PaginationConfig={"PageSize": 1}):
    seen += [v["Version"] for v in page["LayerVersions"]]
assert seen == [2, 1], seen
layers = lam.list_layers()["Layers"]
assert [(l["LayerName"], l["LatestMatchingVersion"]["Version"]) for l in layers] == [("shared", 2)], layers
layers = lam.list_layers(CompatibleRuntime="provided")["Layers"]
assert [(l["LayerName"], l["LatestMatchingVersion"]["Version"]) for l in layers] == [("shared", 1)], layers

fn = lam.create_function(FunctionName="layered", Runtime="provided", Handler="bootstrap", Description="uses a layer",
                         Role="arn:aws:iam::000000000000:role/any", Code={"ZipFile": open(zip_path, "rb").read()},
                         Layers=[v1["LayerVersionArn"]])
assert fn["Description"] == "uses a layer", fn
assert [l["Arn"] for l in fn["Layers"]] == [v1["LayerVersionArn"]], fn
out = json.loads(lam.invoke(FunctionName="layered", Payload=b"{}")["Payload"].read())
assert out["layer"] == "from-layer-1", out

cfg = lam.update_function_configuration(FunctionName="layered", Layers=[v2["LayerVersionArn"]], Description="now layer 2")
assert [l["Arn"] for l in cfg["Layers"]] == [v2["LayerVersionArn"]] and cfg["Description"] == "now layer 2", cfg
out = json.loads(lam.invoke(FunctionName="layered", Payload=b"{}")["Payload"].read())
assert out["layer"] == "from-layer-2", out
conf = lam.get_function_configuration(FunctionName="layered")
assert conf["Description"] == "now layer 2" and [l["Arn"] for l in conf["Layers"]] == [v2["LayerVersionArn"]], conf

ver = lam.publish_version(FunctionName="layered")
assert ver["Version"] == "1" and ver["Description"] == "now layer 2", ver
ver2 = lam.get_function_configuration(FunctionName="layered", Qualifier="1")
assert ver2["Description"] == "now layer 2" and [l["Arn"] for l in ver2["Layers"]] == [v2["LayerVersionArn"]], ver2

cfg = lam.update_function_configuration(FunctionName="layered", Layers=[])
assert "Layers" not in cfg or cfg["Layers"] == [], cfg
out = json.loads(lam.invoke(FunctionName="layered", Payload=b"{}")["Payload"].read())
assert "layer" not in out, out

lam.delete_layer_version(LayerName="shared", VersionNumber=1)
try:
    lam.get_layer_version(LayerName="shared", VersionNumber=1)
    raise SystemExit("a deleted layer version is still there")
except lam.exceptions.ResourceNotFoundException:
    pass
try:
    lam.update_function_configuration(FunctionName="layered", Layers=[v1["LayerVersionArn"]])
    raise SystemExit("a function took a deleted layer version")
except lam.exceptions.InvalidParameterValueException:
    pass
try:
    lam.create_function(FunctionName="toolong", Runtime="provided", Handler="bootstrap", Description="x" * 257,
                        Role="arn:aws:iam::000000000000:role/any", Code={"ZipFile": open(zip_path, "rb").read()})
    raise SystemExit("a 257-byte description was taken")
except lam.exceptions.InvalidParameterValueException:
    pass
assert lam.list_layer_versions(LayerName="never")["LayerVersions"] == []
print("layers boto3 ok")

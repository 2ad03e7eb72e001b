import layerlib


def handler(event, context):
    return {"layer": layerlib.NAME, "file": layerlib.__file__}

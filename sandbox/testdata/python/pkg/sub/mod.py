from . import helper


def handler(event, context):
    return {"from": __name__, "helper": helper.value()}

def handler(event, context):
    return {"hello": event.get("name", "world"), "runtime": "python3.13"}

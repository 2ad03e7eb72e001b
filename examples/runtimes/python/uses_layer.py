import greeting


def handler(event, context):
    return {"message": greeting.greet(event.get("name", "world"))}

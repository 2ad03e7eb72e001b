# A module a layer provides: /opt/python is on a Python function's sys.path.
def greet(name):
    return "hello, " + name + ", from a layer"

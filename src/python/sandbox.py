"""Shared by inframock's Python helpers (mock handlers, queue mappers): loading the user's file.
The confinement itself is the kernel's (Landlock and seccomp, applied by inframock before this
interpreter started); nothing here is a security boundary. This is the first part of each helper's
program text.
"""
import base64
import json
import os
import sys


def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(3)


def load_confined(path, function_name):
    """Loads `function_name` from the file at `path`. Returns (function, result_stream): the stream
    is the original stdout, kept for answers; print() in user code goes to stderr."""
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    result_stream = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    with open(path, "rb") as f:
        source = f.read()
    code = compile(source, path, "exec")
    sys.path.insert(0, folder)
    namespace = {"__name__": "inframock_helper", "__file__": path}
    exec(code, namespace)
    function = namespace.get(function_name)
    if not callable(function):
        fail(f"{path} defines no {function_name}() function")
    return function, result_stream


"""Runs one inframock mock handler in its own process.

argv[1] is the handler file. The request arrives as JSON on stdin: {"body", "headers", "method",
"path", "query"}. The file must define handler(body, headers) returning (status, headers, body) or a
dict (sent as a 200 JSON response). The response leaves as JSON on the original stdout; whatever the
handler prints goes to stderr. Files outside the handler's folder (but for reading Python's own
library), processes, sockets and other file-system changes are refused.
"""
import base64
import json
import os
import sys


def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(3)


def guard_factory(folder, readable):
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    refused = {
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "os.kill", "os.killpg", "pty.spawn", "socket.connect", "socket.bind",
        "socket.sendto", "socket.sendmsg", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
        "os.putenv", "os.unsetenv", "os.chdir", "sys.setprofile", "sys.settrace",
    }
    path_events = {
        "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
        "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    }
    listing_events = {"os.listdir", "os.scandir", "glob.glob"}

    def inside(path, roots):
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return any(real == root or real.startswith(root + os.sep) for root in roots)

    def guard(event, args):
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            writing = isinstance(flags, int) and flags & write_flags
            if isinstance(mode, str) and any(c in mode for c in "wax+"):
                writing = True
            if inside(path, [folder]) or (not writing and inside(path, readable)):
                return
            raise PermissionError(f"inframock handler: access to {os.fsdecode(path)} is refused (only {folder} is allowed)")
        if event in refused or event.startswith("os.exec") or event.startswith("os.spawn"):
            raise PermissionError(f"inframock handler: {event} is refused")
        if event in path_events:
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
            if paths and all(inside(p, [folder]) for p in paths):
                return
            raise PermissionError(f"inframock handler: {event} outside {folder} is refused")
        if event in listing_events:
            path = args[0] if args else "."
            if path is None or isinstance(path, int) or inside(path, [folder] + readable):
                return
            raise PermissionError(f"inframock handler: listing {os.fsdecode(path)} is refused")

    return guard


def to_bytes(body):
    if body is None:
        return b"", None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body).encode("utf-8"), "application/json"


def normalise(result):
    if isinstance(result, dict):
        status, headers, body = 200, {}, result
    elif isinstance(result, (tuple, list)) and len(result) == 3:
        status, headers, body = result
    elif isinstance(result, (tuple, list)) and len(result) == 2:
        status, body = result
        headers = {}
    else:
        fail(f"handler returned {type(result).__name__}; return (status, headers, body) or a dict")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        fail(f"handler returned status {status!r}; it must be an int between 100 and 999")
    if headers is None:
        headers = {}
    if not isinstance(headers, dict):
        fail(f"handler returned headers of type {type(headers).__name__}; use a dict")
    data, content_type = to_bytes(body)
    headers = {str(k): str(v) for k, v in headers.items()}
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["content-type"] = content_type
    return {"status": status, "headers": headers, "body_b64": base64.b64encode(data).decode("ascii")}


def main():
    handler_path = os.path.realpath(sys.argv[1])
    folder = os.path.dirname(handler_path)
    request = json.loads(sys.stdin.buffer.read() or b"{}")
    result_fd = os.dup(1)
    os.dup2(2, 1)
    readable = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)})
    with open(handler_path, "rb") as f:
        source = f.read()
    code = compile(source, handler_path, "exec")
    sys.addaudithook(guard_factory(folder, readable))
    sys.path.insert(0, folder)
    namespace = {"__name__": "inframock_handler", "__file__": handler_path}
    exec(code, namespace)
    handler = namespace.get("handler")
    if not callable(handler):
        fail(f"{handler_path} defines no handler(body, headers) function")
    result = handler(request.get("body"), request.get("headers", {}))
    response = normalise(result)
    with os.fdopen(result_fd, "wb") as out:
        out.write(json.dumps(response).encode("utf-8"))


main()

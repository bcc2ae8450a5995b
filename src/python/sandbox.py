"""The sandbox shared by inframock's Python helpers (mock handlers, queue mappers): an audit hook
that refuses files outside the helper's folder (but for reading Python's own library), processes,
sockets and other file-system changes. It is the first part of each helper's program text.
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




def load_confined(path, function_name):
    """Loads `function_name` from the file at `path`, then confines the process to its folder.
    Returns (function, result_stream): the stream is the original stdout; print() goes to stderr."""
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    result_stream = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    readable = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)})
    with open(path, "rb") as f:
        source = f.read()
    code = compile(source, path, "exec")
    sys.addaudithook(guard_factory(folder, readable))
    sys.path.insert(0, folder)
    namespace = {"__name__": "inframock_helper", "__file__": path}
    exec(code, namespace)
    function = namespace.get(function_name)
    if not callable(function):
        fail(f"{path} defines no {function_name}() function")
    return function, result_stream

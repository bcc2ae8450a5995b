# ---------------------------------------------------------------- mock handler (warm worker)
# argv[1] is the handler file, which defines handler(body, headers). Requests arrive as JSON lines on
# stdin: {"body", "headers", "method", "path", "query"}. For each, one JSON line leaves on the
# original stdout: {"status", "headers", "body_b64"}, or {"error": "<traceback>"} when the handler
# raised or returned something unusable. handler() returns (status, headers, body), (status, body)
# or a dict (sent as a 200 JSON response). Whatever the handler prints goes to stderr.
import traceback


class BadResult(Exception):
    pass


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
        raise BadResult(f"handler returned {type(result).__name__}; return (status, headers, body) or a dict")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise BadResult(f"handler returned status {status!r}; it must be an int between 100 and 999")
    if headers is None:
        headers = {}
    if not isinstance(headers, dict):
        raise BadResult(f"handler returned headers of type {type(headers).__name__}; use a dict")
    data, content_type = to_bytes(body)
    headers = {str(k): str(v) for k, v in headers.items()}
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["content-type"] = content_type
    return {"status": status, "headers": headers, "body_b64": base64.b64encode(data).decode("ascii")}


def main():
    handler, out = load_confined(sys.argv[1], "handler")
    requests = sys.stdin.buffer
    while True:
        line = requests.readline()
        if not line:
            break
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            answer = normalise(handler(request.get("body"), request.get("headers", {})))
        except BadResult as e:
            answer = {"error": str(e)}
        except Exception:
            answer = {"error": traceback.format_exc(limit=8)}
        out.write(json.dumps(answer).encode("utf-8") + b"\n")
        out.flush()


main()

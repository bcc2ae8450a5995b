
# ---------------------------------------------------------------- mock handler
# argv[1] is the handler file. The request arrives as JSON on stdin: {"body", "headers", "method",
# "path", "query"}. The file must define handler(body, headers) returning (status, headers, body) or
# a dict (sent as a 200 JSON response). The response leaves as JSON on the original stdout; whatever
# the handler prints goes to stderr.

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
    request = json.loads(sys.stdin.buffer.read() or b"{}")
    handler, out = load_confined(sys.argv[1], "handler")
    result = handler(request.get("body"), request.get("headers", {}))
    response = normalise(result)
    out.write(json.dumps(response).encode("utf-8"))
    out.flush()


main()

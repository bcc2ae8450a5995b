
# ---------------------------------------------------------------- queue bridge mapper
# argv[1] is the mapper file, which defines map(message). Messages arrive as JSON lines on stdin:
# {"body": <the message body, parsed when it is JSON>}. For each, one JSON line leaves on the
# original stdout: {"ok": true, "drop": false, "body": "<new body text>"} or {"ok": false, "error": "..."}.
# map() returns the new body (a str is sent as is, anything else as JSON), or None to drop the message.
import traceback


def main():
    mapper, out = load_confined(sys.argv[1], "map")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)["body"]
            result = mapper(message)
            if result is None:
                answer = {"ok": True, "drop": True}
            elif isinstance(result, str):
                answer = {"ok": True, "drop": False, "body": result}
            elif isinstance(result, (bytes, bytearray)):
                answer = {"ok": True, "drop": False, "body": bytes(result).decode("utf-8")}
            else:
                answer = {"ok": True, "drop": False, "body": json.dumps(result)}
        except Exception:
            answer = {"ok": False, "error": traceback.format_exc(limit=8)}
        out.write((json.dumps(answer) + "\n").encode("utf-8"))
        out.flush()


main()

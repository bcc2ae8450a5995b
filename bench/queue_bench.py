"""Benchmarks of issue 6 (sections `faults` and `bridge` of `make bench`).

  faults  redis-benchmark (SET and GET, 50 clients, 100,000 requests) straight at redis-server vs
          through inframock's fault proxy with no fault active. Target: >= 80% of direct.
  bridge  messages/s moving a backlog of N (100 and 1000) messages from queue `in` to queue `out`
          through an identity mapper:
          `inframock queue bridge` vs the equivalent boto3 loop (receive 10, map, send, delete).
Both run against a stack started by `inframock run --detach` on free ports, stopped afterwards.
"""
import json
import os
import re
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "inframock")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
STACK = """
[services.redis]
faults = true
faults_port = 0

[[queues]]
name = "in"

[[queues]]
name = "out"
"""


def env():
    e = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="eu-west-1",
             PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    for key in [k for k in e if k.startswith("INFRAMOCK_")] + ["AWS_ENDPOINT_URL"]:
        e.pop(key, None)
    return e


class Stack:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="inframock-bench-queues-")
        with open(os.path.join(self.dir, "inframock.toml"), "w") as f:
            f.write(STACK)
        with open(os.path.join(self.dir, "identity.py"), "w") as f:
            f.write("def map(message):\n    return message\n")
        out = subprocess.run([BIN, "run", "--detach", "--json", "--no-populate", "--aws-port", "0", "--redis-port", "0",
                              "--faults-port", "0"], cwd=self.dir, env=env(), capture_output=True, text=True, check=True)
        report = json.loads(out.stdout)["data"]
        state = json.load(open(os.path.join(self.dir, ".inframock", "state.json")))
        services = {s["name"]: s for s in report["services"]}
        self.endpoint = services["aws"]["url"]
        self.redis_port = services["redis"]["port"]
        self.proxy_port = [p["port"] for p in state["fault_proxies"] if p["service"] == "redis"][0]

    def stop(self):
        subprocess.run([BIN, "stop"], cwd=self.dir, env=env(), capture_output=True)


def redis_benchmark(port):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get", "-n", "100000",
                          "-c", "50", "--csv"], capture_output=True, text=True, check=True).stdout
    rates = {}
    for line in out.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if fields and fields[0] in ("SET", "GET"):
            rates[fields[0]] = float(fields[1])
    return rates


def bench_faults(runs):
    stack = Stack()
    try:
        direct, proxied = [], []
        redis_benchmark(stack.redis_port)  # warm-up
        for _ in range(runs):
            direct.append(redis_benchmark(stack.redis_port))
            proxied.append(redis_benchmark(stack.proxy_port))
    finally:
        stack.stop()
    result = {}
    for op in ("SET", "GET"):
        d = statistics.median(r[op] for r in direct)
        p = statistics.median(r[op] for r in proxied)
        result[op] = {"direct_rps": d, "proxied_rps": p, "ratio": p / d,
                      "direct_runs": [r[op] for r in direct], "proxied_runs": [r[op] for r in proxied]}
    return result


def fill(sqs, url, count):
    body = json.dumps({"experimentId": "e", "payload": "x" * 200})
    for start in range(0, count, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, count - start))]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def count(sqs, url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


BOTO3_LOOP = r'''
import json, sys, time, boto3
endpoint, in_url, out_url, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sqs = boto3.client("sqs", endpoint_url=endpoint)
def identity(message):
    return message
moved = 0
started = time.perf_counter()
while moved < total:
    for m in sqs.receive_message(QueueUrl=in_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
        body = identity(json.loads(m["Body"]))
        sqs.send_message(QueueUrl=out_url, MessageBody=json.dumps(body))
        sqs.delete_message(QueueUrl=in_url, ReceiptHandle=m["ReceiptHandle"])
        moved += 1
print(time.perf_counter() - started)
'''


def bench_bridge(runs, messages=1000):
    import boto3
    stack = Stack()
    try:
        sqs = boto3.client("sqs", endpoint_url=stack.endpoint, region_name="eu-west-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        ours, theirs = [], []
        for run in range(runs):
            # Fresh queues per run and side (moto allows one purge per minute).
            in_a, out_a, in_b, out_b = (sqs.create_queue(QueueName=f"{n}-{messages}-{run}")["QueueUrl"]
                                        for n in ("in-a", "out-a", "in-b", "out-b"))
            fill(sqs, in_a, messages)
            started = time.perf_counter()
            bridge = subprocess.Popen([BIN, "--json", "--endpoint-url", stack.endpoint, "queue", "bridge", "--from",
                                       f"in-a-{messages}-{run}", "--to", f"out-a-{messages}-{run}", "--mapper", "identity.py"],
                                      cwd=stack.dir, env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)
            forwarded = 0
            for line in bridge.stdout:
                if '"forwarded"' in line:
                    forwarded += 1
                    if forwarded == messages:
                        break
            ours.append(time.perf_counter() - started)
            bridge.terminate()
            bridge.wait(10)
            assert count(sqs, out_a) == messages, "every message reached OUT"
            fill(sqs, in_b, messages)
            out = subprocess.run([os.path.join(VENV_BIN, "python"), "-c", BOTO3_LOOP, stack.endpoint, in_b, out_b,
                                  str(messages)], env=env(), capture_output=True, text=True, check=True)
            theirs.append(float(out.stdout.strip()))
            assert count(sqs, out_b) == messages
    finally:
        stack.stop()
    return {"messages": messages, "inframock_s": ours, "boto3_s": theirs,
            "inframock_msgs_per_s": messages / statistics.median(ours),
            "boto3_msgs_per_s": messages / statistics.median(theirs)}


def report_faults(r):
    lines = ["## Fault proxy, no fault active: redis-benchmark, 50 clients, 100,000 requests (median)", ""]
    for op in ("SET", "GET"):
        x = r[op]
        lines.append(f"- {op}: direct {x['direct_rps']:,.0f} req/s, through the proxy {x['proxied_rps']:,.0f} req/s "
                     f"= {x['ratio'] * 100:.0f}% of direct (target >= 80%); runs direct "
                     f"{[round(v) for v in x['direct_runs']]}, proxied {[round(v) for v in x['proxied_runs']]}")
    return lines + [""]


def report_bridge(r):
    return [f"## Bridge: a backlog of {r['messages']} messages `in` -> identity mapper -> `out` (moto_server, median)",
            "",
            f"- inframock queue bridge: {r['inframock_msgs_per_s']:.0f} msg/s (runs: "
            + ", ".join(f"{v:.2f} s" for v in r["inframock_s"]) + ")",
            f"- boto3 loop (receive 10, map, send_message, delete_message): {r['boto3_msgs_per_s']:.0f} msg/s (runs: "
            + ", ".join(f"{v:.2f} s" for v in r["boto3_s"]) + ")",
            f"- ratio: {r['inframock_msgs_per_s'] / r['boto3_msgs_per_s']:.2f}x", ""]

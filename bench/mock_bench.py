"""The mock benchmark (section `mock` of `make bench`): requests/s and p99 latency with wrk at 64
connections for
  (a) a static expectation of `inframock mock`,
  (b) `inframock mock --upstream` proxying to a local hello-world server,
next to
  - the physical limit: a minimal hyper hello-world server (bench/hello_hyper.rs), hit directly,
  - the scenario seed's approach: one aiohttp process (bench/aiohttp_scenario_server.py), fixed answer.
Every server runs on a free 127.0.0.1 port and is stopped by PID.
"""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "inframock")
HELLO = os.path.join(ROOT, "target", "release", "examples", "hello_hyper")
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
AIOHTTP_SERVER = os.path.join(ROOT, "bench", "aiohttp_scenario_server.py")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, deadline_s=30):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


class Server:
    def __init__(self, args, probe_path="/", env=None, cwd=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [a.replace("{port}", str(self.port)) for a in args]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        wait_http(self.url + probe_path)

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


def wrk(url, seconds, connections=64, threads=2):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * UNITS[p99.group(2)],
            "non_2xx": int(errors.group(1)) if errors else 0}


def measure(url, runs, seconds, connections=64):
    wrk(url, 2, connections)  # warm-up: connections, allocator, JIT-free but caches
    results = [wrk(url, seconds, connections) for _ in range(runs)]
    return {"runs": results, "rps": statistics.median(r["rps"] for r in results),
            "p99_ms": statistics.median(r["p99_ms"] for r in results),
            "non_2xx": sum(r["non_2xx"] for r in results)}


def bench_mock(runs, seconds=10):
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: sudo apt-get install wrk (make bench installs it when run as root)")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "hello_hyper"], cwd=ROOT, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAMOCK_")}
    project = tempfile.mkdtemp(prefix="inframock-bench-mock-")
    results = {}
    hello = Server([HELLO, "{port}"])
    try:
        results["hello_hyper"] = measure(hello.url + "/", runs, seconds)
        mock = Server([BIN, "--mock-port", "{port}", "mock", "--mocks", project], "/mocker/health", env, project)
        try:
            spec = json.dumps({"path": "/static", "status_code": 200, "body": {"hello": "world"}}).encode()
            urllib.request.urlopen(urllib.request.Request(mock.url + "/mocker/expectation", data=spec, method="POST"))
            results["mock_static_expectation"] = measure(mock.url + "/static", runs, seconds)
        finally:
            mock.stop()
        proxy = Server([BIN, "--mock-port", "{port}", "mock", "--mocks", project, "--upstream", hello.url],
                       "/mocker/health", env, project)
        try:
            results["mock_proxy_to_hello"] = measure(proxy.url + "/", runs, seconds)
        finally:
            proxy.stop()
    finally:
        hello.stop()
    aiohttp = Server([VENV_PYTHON, AIOHTTP_SERVER, "{port}"], "/static")
    try:
        results["aiohttp_static"] = measure(aiohttp.url + "/static", runs, seconds)
    finally:
        aiohttp.stop()
    shutil.rmtree(project, ignore_errors=True)
    return results


TRIVIAL_HANDLER = "def handler(body, headers):\n    return 200, {}, 'ok'\n"


def bench_handlers(runs, seconds=10):
    """Section `handlers`: wrk at 8 connections against one `inframock mock`, alternating
    (a) a static expectation, (b) a trivial Python handler on warm confined workers and
    (c) the same handler with `fresh: true` (one confined process per request, the old way)."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: sudo apt-get install wrk (make bench installs it when run as root)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAMOCK_")}
    project = tempfile.mkdtemp(prefix="inframock-bench-handlers-")
    with open(os.path.join(project, "trivial.py"), "w") as handle:
        handle.write(TRIVIAL_HANDLER)
    mock = Server([BIN, "--mock-port", "{port}", "mock", "--mocks", project, "--python", VENV_PYTHON],
                  "/mocker/health", env, project)
    specs = [{"path": "/static", "status_code": 200, "body": "ok"},
             {"path": "/warm", "handler": "trivial.py"},
             {"path": "/fresh", "handler": "trivial.py", "fresh": True}]
    results = {"static": [], "warm": [], "fresh": []}
    try:
        for spec in specs:
            urllib.request.urlopen(urllib.request.Request(mock.url + "/mocker/expectation",
                                                          data=json.dumps(spec).encode(), method="POST"))
        for name in results:
            wrk(f"{mock.url}/{name}", 2, 8)
        for _ in range(runs):  # alternated, so drift hits all three alike
            for name in results:
                results[name].append(wrk(f"{mock.url}/{name}", seconds, 8))
    finally:
        mock.stop()
        shutil.rmtree(project, ignore_errors=True)
    return {name: {"runs": r, "rps": statistics.median(x["rps"] for x in r),
                   "p99_ms": statistics.median(x["p99_ms"] for x in r),
                   "non_2xx": sum(x["non_2xx"] for x in r)} for name, r in results.items()}


def report_handlers(result):
    static, warm, fresh = result["static"], result["warm"], result["fresh"]

    def line(name, r):
        return f"- {name}: {r['rps']:,.0f} req/s, p99 {r['p99_ms']:.2f} ms (runs: " + \
            ", ".join(f"{x['rps']:,.0f}" for x in r["runs"]) + f"; non-2xx {r['non_2xx']})"

    return ["## Python handlers: wrk, 8 connections, 2 threads, one mock server, runs alternated", "",
            line("(a) static expectation", static),
            line("(b) trivial handler on warm, kernel-confined workers (one per core)", warm),
            line("(c) the same handler, `fresh: true` (one confined process per request, as before)", fresh),
            f"- (b) = {warm['rps']:,.0f} req/s (target >= 2,000); (b)/(c) = {warm['rps'] / fresh['rps']:.0f}x "
            f"(target >= 50x); (a)/(b) = {static['rps'] / warm['rps']:.1f}x (target <= 10x)", ""]


def report(result):
    hello, static, proxy, aio = (result[k] for k in ["hello_hyper", "mock_static_expectation",
                                                      "mock_proxy_to_hello", "aiohttp_static"])

    def line(name, r):
        return f"- {name}: {r['rps']:,.0f} req/s, p99 {r['p99_ms']:.2f} ms (runs: " + \
            ", ".join(f"{x['rps']:,.0f}" for x in r["runs"]) + f"; non-2xx {r['non_2xx']})"

    return ["## HTTP mock: wrk, 64 connections, 2 threads, 10 s per run (wrk shares the 2 cores)", "",
            line("hyper hello-world (physical limit, bench/hello_hyper.rs)", hello),
            line("(a) inframock mock, static expectation (journal on)", static),
            line("(b) inframock mock proxying to the hello-world server", proxy),
            line("aiohttp, one process, fixed JSON answer (the scenario seed's approach)", aio),
            f"- (a) hello/static = {hello['rps'] / static['rps']:.2f}x (target <= 1.5x); "
            f"(a)/aiohttp = {static['rps'] / aio['rps']:.1f}x (target >= 10x); "
            f"(b) hello/proxy = {hello['rps'] / proxy['rps']:.2f}x", ""]

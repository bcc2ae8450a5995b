"""Dashboard: how long its pages take against a table of 100,000 items (target: a page of 100 items in
< 300 ms), and what the page set weighs (target < 200 KB), on moto and on MiniStack in one run. Timed
from this process: request sent to the whole page received, over loopback, so it includes the
dashboard's AWS calls (a Scan with Limit=100, whose cost is the engine's) and its rendering."""

import json
import os
import statistics
import tempfile
import time
import urllib.request

from run_bench import WORK, data_of, inframock

ITEMS = 100_000


def get(url):
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:
        body = answer.read()
    return time.perf_counter() - started, len(body)


def bench_dashboard(runs, engine):
    project = tempfile.mkdtemp(dir=WORK, prefix=f"dashboard-{engine}-")
    with open(os.path.join(project, "inframock.toml"), "w") as handle:
        handle.write('[[tables]]\nname = "big"\nhash_key = "id"\n\n[[data.rules]]\npattern = "*.json"\n'
                     'table = "big"\n\n[services.dashboard]\nenabled = true\n')
    os.makedirs(os.path.join(project, "data", "e1"))
    records = [{"id": f"item-{i:06d}", "n": i, "name": f"name {i}", "tags": ["a", "b"]} for i in range(ITEMS)]
    with open(os.path.join(project, "data", "e1", "big.json"), "w") as handle:
        json.dump({"records": records}, handle)
    load_s, result = inframock(["run", "--detach", "--json", "--aws-port", "0", "--redis-port", "0",
                                "--dashboard-port", "0", "--engine", engine], project)
    report = data_of(result.stdout)
    base = report["exports"]["INFRAMOCK_DASHBOARD_URL"]
    pages = {"table page (100 of 100,000 items)": "/resources/table?name=big", "resources": "/resources",
             "stack": "/", "data": "/data"}
    timings = {name: [] for name in pages}
    sizes = {}
    try:
        for _ in range(max(runs, 1) * 4):
            for name, path in pages.items():
                elapsed, size = get(base + path)
                timings[name].append(elapsed)
                sizes[name] = size
    finally:
        inframock(["stop"], project)
    return {"engine": engine, "items": report["data"]["total"]["items"], "load_s": load_s,
            "timings_s": timings, "bytes": sizes}


def report_dashboard(result):
    lines = [f"## Dashboard on {result['engine']} against a table of {result['items']:,} items (loaded by "
             f"`run` in {result['load_s']:.1f} s)", ""]
    for name, values in result["timings_s"].items():
        lines.append(f"- {name}: median {statistics.median(values) * 1000:.0f} ms, max "
                     f"{max(values) * 1000:.0f} ms over {len(values)} requests, {result['bytes'][name]:,} bytes")
    table = statistics.median(result["timings_s"]["table page (100 of 100,000 items)"]) * 1000
    lines += [f"- table page target < 300 ms: {'met' if table < 300 else 'NOT met'} ({table:.0f} ms)",
              f"- these pages together: {sum(result['bytes'].values()):,} bytes (target for the page set < 200 KB)", ""]
    return lines

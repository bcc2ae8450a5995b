"""The load tool's own benchmark (section `benchtool` of `make bench`): `inframock bench` against wrk
on the same hello-world server, runs alternated in one session, and the stall experiment.

1. Accuracy and cost: closed loop at 64 and 8 connections, wrk (2 threads) and `inframock bench
   --concurrency N` alternating, 3 x `--runs` rounds of 3 s (a hello-world run's p50 is one draw from a
   wide spread, so more and shorter runs); both tools share the 2 cores with the server, so a
   tool that costs more CPU also gets fewer answers. wrk corrects its percentiles for coordinated
   omission after the run (stats_correct with the mean interval per connection); inframock bench's
   leading percentiles are corrected the same way, and those are compared. Targets: throughput
   >= 0.9x wrk's, p50 and p99 within 10% of wrk's at the same concurrency.
1b. The same comparison with the server and the tool each on a core of its own (`taskset`, the server on
   the first CPU, the tool on the last; both tools keep 2 threads): on 2 cores shared three ways, the
   scheduler decides which of server and tool runs when: single pairs of runs' p50 ratios ranged
   0.73-1.24x at 8 connections (2026-11-28, 5 pairs). Pinned, the two tools meet the same server under the same
   conditions, as on the two machines wrk's documentation asks for.
2. Coordinated omission: a server that stalls 200 ms once a second (`hello_hyper PORT 200`). The
   closed loop (wrk, and inframock bench --concurrency 8) counts each stalled worker once per stall
   and reports a small p99; the open loop (inframock bench --rate R) counts every request that was
   due during the stall from when it was due, and its p99 shows the stall.
3. A server whose own time dwarfs a tool's (`hello_hyper PORT 0 1`: every answer after a 1 ms
   timer, 1-2 ms): at hello-world latencies (30-60 us) a few microseconds of a tool's own work
   inside its timed window move p50 by 10%; here both tools should report the server's time.

Each comparison also gives each tool's p50 as a share of connections / answers per second: by Little's
law the mean latency were every connection's request at the server all the time. Against the 1 ms
server both tools are near 1. At hello-world latencies both are far below it, and how far depends on
how a tool's event loop orders its connections' reads and writes, not on its clock: a loop that wrote
each connection's next request in turn, after every answer read (tried in the tenth session), had
shares of 0.87-0.95 at 64 connections and 0.54-0.66 at 8, and a p50 1.2-2.9x wrk's at about the same
throughput. And on its cost per request: with wrk's two `epoll_ctl` calls per request added to
inframock bench (tried in the thirteenth session), its requests in flight pinned at 64 connections fell
from 56 to 26 and its p50 from 1.9x wrk's to 0.56-0.91x, at about the same throughput.

Each run also records the share of the machine's CPU time that the hypervisor gave to other guests
meanwhile (/proc/stat steal; `steal.py`): on a shared host a neighbour's load moves one tool's runs as
much as the tools differ. The paired ratios are given again for the pairs in which neither run lost
over 1% of it.

A control runs in every round after the two: oha (a Rust load tool of the field, built from crates.io
into bench/work/tools), whose p50 is set beside wrk's as inframock bench's is, to show how far a second
tool is from wrk under the same conditions. oha does not correct its closed loop for coordinated
omission, so its p99 is set beside inframock bench's uncorrected p99, not wrk's.

Each ratio is given two ways: the ratio of the two tools' medians, and the median of the ratios of
each alternated pair of runs (a run of wrk and the run of inframock bench right after it), which
leaves out the machine's drift from one pair to the next.
"""
import json
import os
import re
import statistics
import subprocess

from mock_bench import BIN, HELLO, ROOT, UNITS, Server
from steal import cpu_jiffies, stolen_share


def on_cpu(cpu, argv):
    """`argv` run on CPU `cpu` alone (`taskset`), or as it is when `cpu` is None."""
    return argv if cpu is None else ["taskset", "-c", str(cpu)] + argv


def watched(argv):
    """Runs `argv`; its standard output, and the share of the machine's CPU time stolen meanwhile."""
    before = cpu_jiffies()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return out, stolen_share(before, cpu_jiffies())


def wrk_run(url, seconds, connections, cpu=None):
    out, stolen = watched(on_cpu(cpu, ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]))

    def percentile(name):
        match = re.search(rf"{name}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(match.group(1)) * UNITS[match.group(2)]

    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": percentile("50"), "p99_ms": percentile("99"), "stolen": stolen}


def ours_run(url, seconds, load_flag, value, connections=None, cpu=None):
    args = [BIN, "bench", url, load_flag, str(value), "--duration", f"{seconds}s", "--json", "--threads", "2"]
    if connections:
        args += ["--connections", str(connections)]
    out, stolen = watched(on_cpu(cpu, args))
    step = json.loads(out)["data"]["steps"][0]
    corrected, sent = step["corrected_latency_ms"], step["latency_ms"]
    return {"rps": step["throughput"], "p50_ms": corrected["p50"], "p99_ms": corrected["p99"],
            "uncorrected_p50_ms": sent["p50"], "uncorrected_p99_ms": sent["p99"], "stolen": stolen}


def medians(runs):
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


# The control: a second load tool from the field, compared with wrk in the same runs.
OHA_VERSION = "1.16.0"
OHA = os.path.join(ROOT, "bench", "work", "tools", "bin", "oha")


def ensure_oha():
    """oha's path, built from crates.io into bench/work/tools the first time (a few minutes); or the
    reason it is not there."""
    if os.path.exists(OHA):
        return OHA, None
    built = subprocess.run(["cargo", "install", "oha", "--version", OHA_VERSION, "--locked", "--quiet",
                            "--root", os.path.dirname(os.path.dirname(OHA))], capture_output=True, text=True)
    if built.returncode != 0 or not os.path.exists(OHA):
        # cargo's own `error:` lines say why; the compiler output above them would fill the report.
        lines = [line.strip() for line in built.stderr.splitlines() if line.strip()]
        why = "; ".join(line for line in lines if line.startswith("error")) or (lines[-1] if lines else "")
        return None, f"`cargo install oha --version {OHA_VERSION}` failed: {why[:300]}"
    return OHA, None


def oha_run(oha, url, seconds, connections, cpu=None):
    """oha's closed loop (`-c`), which it does not correct for coordinated omission."""
    out, stolen = watched(on_cpu(cpu, [oha, "-z", f"{seconds}s", "-c", str(connections), "--no-tui",
                                       "--output-format", "json", url]))
    report = json.loads(out)
    percentiles = report["latencyPercentiles"]
    return {"rps": report["summary"]["requestsPerSec"], "p50_ms": percentiles["p50"] * 1000,
            "p99_ms": percentiles["p99"] * 1000, "stolen": stolen}


def alternated(url, runs, seconds, connections, cpu=None, oha=None):
    """`runs` rounds of runs, wrk then inframock bench then (given its path) oha, on CPU `cpu` alone
    if given; each tool's runs and medians."""
    pairs = {"wrk": [], "inframock": []} | ({"oha": []} if oha else {})
    for _ in range(runs):
        pairs["wrk"].append(wrk_run(url, seconds, connections, cpu))
        pairs["inframock"].append(ours_run(url, seconds, "--concurrency", connections, cpu=cpu))
        if oha:
            pairs["oha"].append(oha_run(oha, url, seconds, connections, cpu))
    return {name: {"runs": r, **medians(r)} for name, r in pairs.items()}


def bench_load_tool(runs, seconds=5, accuracy_seconds=3):
    """Every comparison alternates the tools `runs` times, except at hello-world latencies: there a
    single run's p50 is one draw from a wide spread (wrk's own, pinned at 64 connections, 0.184-0.880
    ms over 8 runs of 3 s with no CPU time stolen), so those alternate `3 * runs` times, in runs of
    `accuracy_seconds`: more draws in the same time."""
    rounds = 3 * runs
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "hello_hyper"], cwd=ROOT, check=True)
    oha, oha_missing = ensure_oha()
    result = {"seconds": seconds, "accuracy_seconds": accuracy_seconds, "runs": runs, "accuracy_rounds": rounds,
              "accuracy": {}, "stall": {},
              "delayed_ms": 1, "delayed": {}, "oha": OHA_VERSION if oha else oha_missing}
    hello = Server([HELLO, "{port}"])
    try:
        url = hello.url + "/"
        wrk_run(url, 2, 64)  # warm-up
        for connections in (64, 8):
            result["accuracy"][connections] = alternated(url, rounds, accuracy_seconds, connections, oha=oha)
    finally:
        hello.stop()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        result["pinned_cpus"] = {"server": cpus[0], "tool": cpus[-1]}
        pinned = Server(on_cpu(cpus[0], [HELLO, "{port}"]))
        try:
            url = pinned.url + "/"
            wrk_run(url, 2, 64, cpus[-1])  # warm-up
            result["pinned"] = {connections: alternated(url, rounds, accuracy_seconds, connections, cpus[-1], oha)
                                for connections in (64, 8)}
        finally:
            pinned.stop()
    delayed = Server([HELLO, "{port}", "0", str(result["delayed_ms"])])
    try:
        for connections in (64, 8):
            result["delayed"][connections] = alternated(delayed.url + "/", runs, seconds, connections, oha=oha)
    finally:
        delayed.stop()
    stalled = Server([HELLO, "{port}", "200"])
    try:
        url = stalled.url + "/"
        rate = 2000
        pairs = {"wrk_c8": [], "inframock_closed_c8": [], "inframock_open": []}
        for _ in range(runs):
            pairs["wrk_c8"].append(wrk_run(url, seconds * 2, 8))
            pairs["inframock_closed_c8"].append(ours_run(url, seconds * 2, "--concurrency", 8))
            pairs["inframock_open"].append(ours_run(url, seconds * 2, "--rate", rate, connections=64))
        result["stall"] = {"rate": rate, **{name: {"runs": r, **medians(r)} for name, r in pairs.items()}}
    finally:
        stalled.stop()
    return result


def paired(wrk, ours, key, pairs=None):
    """The ratios of each alternated pair of runs (or of `pairs`, a list of (wrk run, inframock
    bench run)): their median and range."""
    pairs = list(zip(wrk["runs"], ours["runs"])) if pairs is None else pairs
    ratios = sorted(o[key] / w[key] for w, o in pairs)
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"


# A run that lost more of the machine's CPU time than this to other guests is counted as disturbed.
CALM_STOLEN = 0.01


def stolen_range(runs):
    """The least and most CPU time stolen during one tool's runs, as percentages."""
    stolen = [r["stolen"] for r in runs["runs"]]
    return f"{100 * min(stolen):.1f}-{100 * max(stolen):.1f}%"


def steal_lines(wrk, ours):
    """How much CPU time the hypervisor took during each tool's runs, and the paired ratios of the
    pairs that neither lost more than `CALM_STOLEN` of it (runs recorded before steal was, none)."""
    if "stolen" not in wrk["runs"][0]:
        return []
    lines = [f"  - CPU time the hypervisor gave to other guests during a run (/proc/stat steal, a share of the "
             f"machine's): wrk {stolen_range(wrk)}, inframock bench {stolen_range(ours)}"]
    calm = [(w, o) for w, o in zip(wrk["runs"], ours["runs"]) if max(w["stolen"], o["stolen"]) <= CALM_STOLEN]
    if calm:
        lines.append(f"  - the {len(calm)} of {len(wrk['runs'])} pairs in which neither run lost over "
                     f"{100 * CALM_STOLEN:.0f}%: throughput {paired(wrk, ours, 'rps', calm)}, "
                     f"p50 {paired(wrk, ours, 'p50_ms', calm)}, p99 {paired(wrk, ours, 'p99_ms', calm)}")
    else:
        lines.append(f"  - no pair ran with both runs under {100 * CALM_STOLEN:.0f}% stolen")
    return lines


def comparison(title, accuracy):
    """A table of both tools' medians per concurrency, and the ratios to wrk's."""
    lines = [title, "", "| connections | tool | answers/s | p50 ms | p99 ms | uncorrected p50 / p99 ms |",
             "|---|---|---|---|---|---|"]
    verdicts = []
    for connections, pair in accuracy.items():
        wrk, ours = pair["wrk"], pair["inframock"]
        for name, r in (("wrk -t2", wrk), ("inframock bench", ours)):
            raw = (f"{r['uncorrected_p50_ms']:.3f} / {r['uncorrected_p99_ms']:.3f}" if "uncorrected_p50_ms" in r
                   else "(wrk prints only corrected)")
            lines.append(f"| {connections} | {name} | {r['rps']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {raw} |")
        if "oha" in pair:
            r = pair["oha"]
            lines.append(f"| {connections} | oha (control) | {r['rps']:,.0f} | | | {r['p50_ms']:.3f} / {r['p99_ms']:.3f} |")
        verdicts.append(f"- {connections} connections: throughput {ours['rps'] / wrk['rps']:.2f}x wrk's (target >= 0.9); "
                        f"p50 {ours['p50_ms'] / wrk['p50_ms']:.2f}x, p99 {ours['p99_ms'] / wrk['p99_ms']:.2f}x "
                        "wrk's (target 0.9-1.1)")
        verdicts.append(f"  - median of the paired runs' ratios (range): throughput {paired(wrk, ours, 'rps')}, "
                        f"p50 {paired(wrk, ours, 'p50_ms')}, p99 {paired(wrk, ours, 'p99_ms')}")
        spread = lambda r, key: f"{min(x[key] for x in r['runs']):.3f}-{max(x[key] for x in r['runs']):.3f}"
        verdicts.append(f"  - run to run, p50 ms: wrk {spread(wrk, 'p50_ms')}, inframock bench {spread(ours, 'p50_ms')}; "
                        f"p99 ms: wrk {spread(wrk, 'p99_ms')}, inframock bench {spread(ours, 'p99_ms')}")
        verdicts.append(f"  - p50 as a share of {connections} / answers per second (by Little's law, the mean latency were all "
                        f"{connections} requests at the server all the time): wrk {evenness(wrk, connections):.2f}, "
                        f"inframock bench {evenness(ours, connections):.2f} (1 when each request waits its turn; far below 1 "
                        "when a tool's loop answers most requests at once and a few late, or holds connections idle between "
                        "an answer and the next request)")
        verdicts.append(f"  - wrk against itself (the control): its highest p50 of these runs is {own(wrk, 'p50_ms'):.2f}x its "
                        f"lowest, p99 {own(wrk, 'p99_ms'):.2f}x, throughput {own(wrk, 'rps'):.2f}x")
        verdicts += steal_lines(wrk, ours)
        if "oha" in pair:
            verdicts += control_lines(wrk, ours, pair["oha"])
    return lines + [""] + verdicts


def control_lines(wrk, ours, oha):
    """oha against wrk in the same rounds, as inframock bench is: how far a second tool of the field
    is from wrk. oha's closed loop is not corrected for coordinated omission, so its p50 is set beside
    wrk's (which the correction moves little) and its p99 beside inframock bench's uncorrected p99."""
    return [f"  - control, oha {OHA_VERSION} in the same rounds: throughput {oha['rps'] / wrk['rps']:.2f}x wrk's, "
            f"p50 {oha['p50_ms'] / wrk['p50_ms']:.2f}x wrk's (paired {paired(wrk, oha, 'p50_ms')}); against "
            f"inframock bench's uncorrected figures: p50 {oha['p50_ms'] / ours['uncorrected_p50_ms']:.2f}x, "
            f"p99 {oha['p99_ms'] / ours['uncorrected_p99_ms']:.2f}x; its runs' stolen CPU time {stolen_range(oha)}"]


def evenness(runs, connections):
    """The median over a tool's runs of its p50 divided by `connections` / its throughput."""
    return statistics.median(r["p50_ms"] / (int(connections) / r["rps"] * 1000) for r in runs["runs"])


def own(runs, key):
    """How far one tool's runs are from each other: the highest value over the lowest. Where wrk's own
    runs are more than 1.1x apart, a 0.9-1.1x window between two tools is within the machine's noise."""
    values = [r[key] for r in runs["runs"]]
    return max(values) / min(values)


def report_load_tool(result):
    # Results recorded before the hello-world comparisons had their own length and rounds lack them.
    accuracy_runs = (f"{result.get('accuracy_seconds', result['seconds'])} s per run, median of "
                     f"{result.get('accuracy_rounds', result['runs'])} alternated runs")
    lines = comparison(f"## inframock bench against wrk: hello_hyper, closed loop, {accuracy_runs} "
                       "(tool and server share the 2 cores)", result["accuracy"])
    oha = result.get("oha")
    if oha:
        lines[1:1] = ["", f"Control: oha {oha}, built from crates.io, runs after inframock bench in every round."
                      if oha == OHA_VERSION else f"Control: oha not measured: {oha}"]
    if result.get("pinned"):
        cpus = result["pinned_cpus"]
        lines += [""] + comparison(
            f"## The same, the server on CPU {cpus['server']} and the tool on CPU {cpus['tool']} (taskset): "
            f"{accuracy_runs}", result["pinned"])
    if result.get("delayed"):
        lines += [""] + comparison(
            f"## The same, against a server answering after a {result['delayed_ms']} ms timer (1-2 ms): "
            f"{result['seconds']} s per run, median of {result['runs']} alternated runs", result["delayed"])
    stall = result["stall"]
    wrk, closed, opened = stall["wrk_c8"], stall["inframock_closed_c8"], stall["inframock_open"]
    lines += ["",
              f"## Coordinated omission: hello_hyper stalling 200 ms once a second, {result['seconds'] * 2} s per run", "",
              f"- wrk, 8 connections (closed loop): p99 {wrk['p99_ms']:.2f} ms at {wrk['rps']:,.0f} answers/s",
              f"- inframock bench --concurrency 8 (closed loop): p99 from the send {closed['uncorrected_p99_ms']:.2f} ms "
              f"(what a closed loop measures: it hides the stall); corrected as wrk does {closed['p99_ms']:.2f} ms; "
              f"{closed['rps']:,.0f} answers/s",
              f"- inframock bench --rate {stall['rate']} (open loop, 64 connections): p99 from when due "
              f"{opened['p99_ms']:.2f} ms, p50 {opened['p50_ms']:.2f} ms; p99 from the send {opened['uncorrected_p99_ms']:.2f} ms",
              "- a fifth of each second is stalled, so ~20% of the scheduled requests wait up to 200 ms: the open "
              "loop measures it, the closed loop's own measurement hides it (wrk's after-the-fact correction "
              "estimates it back)", ""]
    return lines

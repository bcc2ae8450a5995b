"""Snapshots (issue 17): save and load of the load benchmark's state (50 experiments, ~2 GiB of objects
decompressed, 10,000 items) next to the first data load of that same state, round by round, on moto and on MiniStack in one run:

  first load     `reload-data` into a fresh moto_server (the reference)
  save           `snapshot save` of that state (every object fetched, hashed, written to disk once)
  second save    `snapshot save` again with nothing changed (nothing fetched: contents linked)
  load           `snapshot load` into a fresh moto_server (every part verified, then written)

Each engine runs twice: with the built-in stack, and with the built-in stack plus `[stack] persist = true`,
whose tables get a KEYS_ONLY stream; a save then reads a table again only when its stream shows a write since
an earlier save (the second save links the tables' files), and each write costs the engine a stream record
(which the first load shows).

Targets: save and load each <= 1.2x the first load; second save < 1 s and writes no object again;
peak RSS of save and load < 150 MB (VmHWM of the inframock process, polled every 50 ms)."""

import os
import shutil
import subprocess
import sys
import tempfile

from run_bench import ROOT, WORK, data_of, inframock, median, run_measuring_rss


def fresh_stack(project, data, engine):
    """Restarts a local stack on `engine` (a new, empty engine process) with every resource."""
    inframock(["stop", "--no-save"], project, check=False)
    inframock(["run", "--detach", "--runtime", "local", "--engine", engine, "--no-populate", "--aws-port", "0",
               "--redis-port", "0", "--data", data], project)


def engine_items(project):
    """Items the stack's tables hold, counted by the engine itself (paginated Scan, Select=COUNT): what a
    save should find, checked independently of inframock's own reading."""
    import boto3
    _, status = inframock(["status", "--json"], project)
    stack = data_of(status.stdout)
    aws = [s for s in stack["services"] if s["service"] == "aws"][0]
    dynamodb = boto3.client("dynamodb", endpoint_url=aws["url"], region_name=stack["region"],
                            aws_access_key_id="test", aws_secret_access_key="test")
    total = 0
    for table in dynamodb.list_tables()["TableNames"]:
        page = {}
        while True:
            answer = dynamodb.scan(TableName=table, Select="COUNT", **page)
            total += answer["Count"]
            if "LastEvaluatedKey" not in answer:
                break
            page = {"ExclusiveStartKey": answer["LastEvaluatedKey"]}
    return total


def measured(args, project):
    """Runs inframock; (seconds, JSON data, peak RSS in MiB)."""
    elapsed, stdout, peak_mib = run_measuring_rss(args, project)
    return elapsed, data_of(stdout), peak_mib


def linked_contents(snapshot_dir):
    """(contents, contents with more than one link) of a snapshot's object store."""
    total = linked = 0
    for folder, _, files in os.walk(os.path.join(snapshot_dir, "objects")):
        for name in files:
            total += 1
            if os.stat(os.path.join(folder, name)).st_nlink > 1:
                linked += 1
    return total, linked


def bench_snapshot(runs, experiments, rds_mib, engine, persist=False):
    data = os.path.join(WORK, f"data-{experiments}x{rds_mib}")
    if not os.path.isdir(data):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen_data.py"), data, "--experiments",
                        str(experiments), "--rds-bytes", str(rds_mib * 1024 * 1024), "--items", "10000"], check=True)
    project = tempfile.mkdtemp(dir=WORK, prefix=f"snapshot-{engine}-")
    # Its own project (the built-in stack): without .inframock/ the repository's would be found upward.
    os.makedirs(os.path.join(project, ".inframock"))
    if persist:
        with open(os.path.join(ROOT, "src", "default_stack.toml")) as built_in:
            stack = built_in.read()
        with open(os.path.join(project, "inframock.toml"), "w") as stack_file:
            stack_file.write(stack + "\n[stack]\npersist = true\n")
    snapshots = os.path.join(project, ".inframock", "snapshots")
    result = {"engine": engine, "persist": persist, "experiments": experiments, "rds_decompressed_mib": rds_mib, "first_load_s": [], "save_s": [],
              "save_peak_rss_mib": [], "second_save_s": [], "second_save_fetched": [], "second_save_linked": [],
              "load_s": [], "load_peak_rss_mib": [], "counts": None, "save_ms_by_service": [],
              "second_save_ms_by_service": []}
    try:
        for _ in range(runs):
            fresh_stack(project, data, engine)
            for record in ("fingerprints.json", "loaded-items.json"):
                path = os.path.join(project, ".inframock", record)
                if os.path.exists(path):
                    os.remove(path)
            shutil.rmtree(snapshots, ignore_errors=True)
            elapsed, done = inframock(["reload-data", "--json", "--data", data], project)
            assert data_of(done.stdout)["total"]["failed"] == 0
            result["first_load_s"].append(elapsed)
            result.setdefault("engine_items_after_load", []).append(engine_items(project))
            elapsed, saved, rss = measured(["snapshot", "save", "bench", "--json"], project)
            result["save_s"].append(elapsed)
            result["save_peak_rss_mib"].append(rss)
            result["counts"] = saved["manifest"]["counts"]
            result.setdefault("saved_items", []).append(saved["manifest"]["counts"]["items"])
            result["save_ms_by_service"].append(saved["elapsed_ms_by_service"])
            result.setdefault("save_tables_exported", []).append(len(saved.get("tables_exported", [])))
            elapsed, again, _ = measured(["snapshot", "save", "again", "--json"], project)
            result["second_save_s"].append(elapsed)
            result.setdefault("second_save_tables_unchanged", []).append(len(again["tables_unchanged"]))
            result["second_save_fetched"].append(again["objects_fetched"])
            result["second_save_ms_by_service"].append(again["elapsed_ms_by_service"])
            total, linked = linked_contents(os.path.join(snapshots, "again"))
            result["second_save_linked"].append(f"{linked}/{total}")
            fresh_stack(project, data, engine)
            elapsed, loaded, rss = measured(["snapshot", "load", "bench", "--json"], project)
            assert not loaded["failed"], loaded["failed"]
            assert loaded["objects_written"] == result["counts"]["objects"], loaded
            result["load_s"].append(elapsed)
            result["load_peak_rss_mib"].append(rss)
            result.setdefault("engine_items_after_snapshot_load", []).append(engine_items(project))
    finally:
        inframock(["stop", "--no-save"], project, check=False)
        shutil.rmtree(project, ignore_errors=True)
    return result


def report_snapshot(result):
    first, save, again, load = (median(result[k]) for k in ["first_load_s", "save_s", "second_save_s", "load_s"])
    counts = result["counts"] or {}
    fmt = lambda values: f"median {median(values):.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})"
    variant = "`[stack] persist = true` (tables with a stream)" if result.get("persist") else "the built-in stack"
    return [f"## Snapshots on {result['engine']}, {variant}: the load benchmark's state ({counts.get('objects')} objects, "
            f"{counts.get('object_bytes', 0) / 2 ** 30:.2f} GiB; {counts.get('items')} items)", "",
            f"- first data load (reference, same round): {fmt(result['first_load_s'])}",
            f"- `snapshot save`: {fmt(result['save_s'])}; {save / first:.2f}x the first load (target <= 1.2x); "
            f"peak RSS {max(result['save_peak_rss_mib'])} MiB (target < 150); tables read through the engine's "
            f"export instead of Scan {result.get('save_tables_exported')}",
            f"- second save, nothing changed: {fmt(result['second_save_s'])} (target < 1 s); objects fetched "
            f"{result['second_save_fetched']}; contents linked from the first save {result['second_save_linked']}; "
            f"tables proven unchanged (stream, or on moto the export's text) {result.get('second_save_tables_unchanged')}",
            f"- per service, milliseconds (save; second save): {result['save_ms_by_service']}; "
            f"{result['second_save_ms_by_service']}",
            f"- `snapshot load` into a fresh engine: {fmt(result['load_s'])}; {load / first:.2f}x the first load "
            f"(target <= 1.2x); peak RSS {max(result['load_peak_rss_mib'])} MiB (target < 150)",
            f"- items per round, counted by the engine (Scan) after the first load / saved / counted by the engine "
            f"after the snapshot load: {result.get('engine_items_after_load')} / {result.get('saved_items')} / "
            f"{result.get('engine_items_after_snapshot_load')}", ""]

#!/usr/bin/env python3
"""Generate synthetic inframock data folders (nothing is downloaded).

    gen_data.py OUT --experiments N --rds-bytes BYTES --items TOTAL [--seed S]

Each experiment gets the files the original tool loaded: mock_experiment.json (plain JSON),
mock_samples.json (DynamoDB-typed JSON, as `biomage experiment pull` writes it), mock_projects.json,
mock_plots_tables.json ({"records": [...]}), mock_cell_sets.json and r.rds.gz (gzip of
pseudo-random bytes of the given decompressed size, compressible like real RDS data).
"""
import argparse
import gzip
import hashlib
import json
import os
import random


def experiment_id(index, seed):
    return hashlib.md5(f"{seed}-{index}".encode()).hexdigest()


def write_json(path, value):
    with open(path, "w") as handle:
        json.dump(value, handle, indent=1)


def write_rds_gz(path, size, rng):
    """Gzip of `size` bytes, half random and half zeros in 8 KiB blocks (gzip halves it), streamed."""
    with gzip.open(path, "wb", compresslevel=1) as handle:
        left = size
        while left > 0:
            block = (rng.randbytes(4096) + b"\0" * 4096)[:left]
            handle.write(block)
            left -= len(block)


def generate(out, experiments, rds_size, items_total, seed):
    rng = random.Random(seed)
    plots_per_experiment = max(0, items_total // max(experiments, 1) - 3)
    for index in range(experiments):
        eid = experiment_id(index, seed)
        folder = os.path.join(out, eid)
        os.makedirs(folder, exist_ok=True)
        project = f"project-{index:04d}"
        write_json(os.path.join(folder, "mock_experiment.json"), {
            "experimentId": eid,
            "experimentName": f"Synthetic experiment {index}",
            "projectId": project,
            "createdDate": "2021-03-18T10:57:10+0000",
            "meta": {"organism": "mmusculus", "type": "10x"},
            "processingConfig": {
                "mitochondrialContent": {"enabled": True, "filterSettings": {"maxFraction": 0.1, "binStep": 0.05}},
                "classifier": {"enabled": True, "auto": True, "filterSettings": {"FDR": 0.1}},
            },
        })
        write_json(os.path.join(folder, "mock_samples.json"), {
            "experimentId": {"S": eid},
            "projectUuid": {"S": project},
            "samples": {"M": {
                "ids": {"L": [{"S": "sample-KO"}, {"S": "sample-WT"}]},
                "sample-KO": {"M": {"name": {"S": "KO"}, "type": {"S": "10x"}, "complete": {"BOOL": True}}},
                "sample-WT": {"M": {"name": {"S": "WT"}, "type": {"S": "10x"}, "complete": {"BOOL": True}}},
            }},
        })
        write_json(os.path.join(folder, "mock_projects.json"), {
            "projectUuid": project,
            "projects": {"uuid": project, "name": f"Project {index}", "experiments": [eid], "samples": ["sample-KO", "sample-WT"]},
        })
        write_json(os.path.join(folder, "mock_plots_tables.json"), {"records": [
            {
                "experimentId": eid,
                "plotUuid": f"plot-{p}",
                "plotType": "cellSizeDistributionKneePlot",
                "lastUpdated": "Mon Mar 01 2021",
                "config": {},
                "plotData": [{"rank": r, "u": round(rng.uniform(100, 20000), 2)} for r in range(5)],
            }
            for p in range(plots_per_experiment)
        ]})
        write_json(os.path.join(folder, "mock_cell_sets.json"), {"cellSets": [
            {"key": "louvain", "name": "louvain clusters", "rootNode": True, "children": [
                {"key": "louvain-0", "name": "Cluster 0", "color": "#77aadd", "cellIds": list(range(0, 20))},
            ]},
        ]})
        write_rds_gz(os.path.join(folder, "r.rds.gz"), rds_size, rng)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--experiments", type=int, default=1)
    parser.add_argument("--rds-bytes", type=int, default=16384)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    generate(args.out, args.experiments, args.rds_bytes, args.items, args.seed)


if __name__ == "__main__":
    main()

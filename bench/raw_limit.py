#!/usr/bin/env python3
"""The raw endpoint limit: the fastest put loop we could write against the endpoint. Everything is
prepared in memory first (decompressed bodies, typed items), then 16 threads issue PutObject (one
request per object, no hashing, no HEAD) and BatchWriteItem (25 items) as fast as the endpoint takes them.
Only the put phase is timed.

    raw_limit.py DATA ENDPOINT      -> prints the seconds of the put phase
"""
import concurrent.futures
import gzip
import json
import os
import sys
import time
from decimal import Decimal

import boto3
from boto3.dynamodb.types import TypeSerializer

ENV = "development"
TABLES = {"mock_experiment.json": "experiments", "mock_samples.json": "samples",
          "mock_projects.json": "projects", "mock_plots_tables.json": "plots-tables"}


def main():
    data, endpoint = sys.argv[1], sys.argv[2]
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="eu-west-1")
    config = boto3.session.Config(max_pool_connections=32)
    s3 = session.client("s3", endpoint_url=endpoint, config=config)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint, config=config)
    serializer = TypeSerializer()
    objects, batches = [], []
    for experiment in sorted(os.listdir(data)):
        folder = os.path.join(data, experiment)
        if not os.path.isdir(folder):
            continue
        with gzip.open(os.path.join(folder, "r.rds.gz"), "rb") as handle:
            objects.append((f"biomage-source-{ENV}", f"{experiment}/r.rds", handle.read()))
        with open(os.path.join(folder, "mock_cell_sets.json"), "rb") as handle:
            objects.append((f"cell-sets-{ENV}", experiment, handle.read()))
        for name, table in TABLES.items():
            with open(os.path.join(folder, name)) as handle:
                document = json.load(handle, parse_float=Decimal)
            items = document["records"] if "records" in document else [document]
            typed = [i if all(isinstance(v, dict) and len(v) == 1 for v in i.values())
                     else {k: serializer.serialize(v) for k, v in i.items()} for i in items]
            for start in range(0, len(typed), 25):
                batches.append((f"{table}-{ENV}", typed[start:start + 25]))

    def put_object(job):
        bucket, key, body = job
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    def write_batch(job):
        table, items = job
        requests = [{"PutRequest": {"Item": item}} for item in items]
        while requests:
            left = dynamodb.batch_write_item(RequestItems={table: requests}).get("UnprocessedItems", {})
            requests = left.get(table, [])

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put_object, objects))
        list(pool.map(write_batch, batches))
    print(f"{time.perf_counter() - started:.3f}")


if __name__ == "__main__":
    main()

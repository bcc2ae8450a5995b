#!/usr/bin/env python3
"""Baseline: load a data folder the way the original Python inframock did (src/app.py, 2021):
one put_item per item (boto3 client, DynamoDB-typed or plain-with-Decimal), one upload_fileobj per
r.rds.gz through a streamed GzipFile with a 20 MB multipart threshold, sequentially.

    original_loader.py DATA ENDPOINT
"""
import glob
import gzip
import json
import os
import re
import sys
from decimal import Decimal

import boto3
from boto3.dynamodb.types import TypeSerializer
from boto3.s3.transfer import TransferConfig

ENV = "development"
TABLES = {"mock_experiment": "experiments", "mock_samples": "samples", "mock_projects": "projects",
          "mock_plots_tables": "plots-tables"}


def main():
    data, endpoint = sys.argv[1], sys.argv[2]
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="eu-west-1")
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    s3 = session.resource("s3", endpoint_url=endpoint)
    serializer = TypeSerializer()
    config = TransferConfig(multipart_threshold=20 * 1024 * 1024)
    for experiment in os.listdir(data):
        folder = os.path.join(data, experiment)
        if not os.path.isdir(folder):
            continue
        for path in glob.glob(f"{folder}/*"):
            name = os.path.basename(path)
            table = next((t for prefix, t in TABLES.items() if re.match(f"^{prefix}.*\\.json$", name)), None)
            if table:
                with open(path) as handle:
                    document = json.load(handle, parse_float=Decimal)
                items = document["records"] if "records" in document else [document]
                for item in items:
                    typed = all(isinstance(v, dict) and len(v) == 1 for v in item.values())
                    if not typed:
                        item = {k: serializer.serialize(v) for k, v in item.items()}
                    dynamodb.put_item(TableName=f"{table}-{ENV}", Item=item)
            elif name == "r.rds.gz":
                with open(path, "rb") as handle:
                    contents = gzip.GzipFile(fileobj=handle, mode="rb")
                    s3.Object(f"biomage-source-{ENV}", f"{experiment}/r.rds").upload_fileobj(Fileobj=contents, Config=config)
            elif name == "mock_cell_sets.json":
                with open(path, "rb") as handle:
                    s3.Object(f"cell-sets-{ENV}", experiment).put(Body=handle.read())


if __name__ == "__main__":
    main()

"""Reproduces, inside moto's own process, the race that lost items during loads on moto (make bench
T1310 and T1344: 17 and 31 of 10,000 items in 2 of 6 rounds with `persist`), and the control that
shows its cause (src/data/partitions.rs).

moto's `put_item` creates a new partition key's item collection with no lock. With thread switches
forced (sys.setswitchinterval), writers that create the same new partition keys at once lose items;
the same number of writes with one writer per partition key loses none.

    .venv/bin/python bench/moto_partition_race.py [rounds]

Measured 2026-11-27, 5 rounds of 4 writers x 50 keys x 25 items (25,000 items per case): writers of
the same new keys at once lost 22 items with a KEYS_ONLY stream and 51 without (an earlier run: 102
and 27); one writer per key lost 0 in both. The loss varies from run to run, as a race does."""

import sys
import threading

from moto.dynamodb.models import dynamodb_backends

WRITERS, KEYS, ITEMS = 4, 50, 25


def table(backend, name, stream):
    backend.create_table(
        name, schema=[{"AttributeName": "h", "KeyType": "HASH"}, {"AttributeName": "r", "KeyType": "RANGE"}],
        attr=[{"AttributeName": "h", "AttributeType": "S"}, {"AttributeName": "r", "AttributeType": "S"}],
        throughput=None, billing_mode="PAY_PER_REQUEST", indexes=None, global_indexes=None,
        streams={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"} if stream else None,
        sse_specification=None, tags=[], deletion_protection_enabled=False, warm_throughput=None)


def lost(backend, name, same_keys):
    """Items lost when WRITERS threads write: each the same new keys at once, or each its own keys."""
    barrier = threading.Barrier(WRITERS)

    def write(writer):
        keys = range(KEYS) if same_keys else range(writer, KEYS * WRITERS, WRITERS)
        for key in keys:
            if same_keys:
                barrier.wait()
            for item in range(ITEMS):
                backend.put_item(name, {"h": {"S": f"h{key}"}, "r": {"S": f"r{writer}-{item}"}})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = WRITERS * KEYS * ITEMS
    return written - len(backend.get_table(name))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    sys.setswitchinterval(1e-6)
    backend = dynamodb_backends["123456789012"]["us-east-1"]
    for stream in (True, False):
        for same_keys in (True, False):
            total = 0
            for n in range(rounds):
                name = f"race-{int(stream)}-{int(same_keys)}-{n}"
                table(backend, name, stream)
                total += lost(backend, name, same_keys)
            print(f"{'with' if stream else 'without'} a stream, "
                  f"{'writers of the same new keys at once' if same_keys else 'one writer per key'}: "
                  f"{total} of {rounds * WRITERS * KEYS * ITEMS} items lost")


if __name__ == "__main__":
    main()

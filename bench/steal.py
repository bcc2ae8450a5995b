"""CPU time the hypervisor gave to other guests while a benchmark ran ("steal" in /proc/stat).

On a virtual machine whose host is shared, a run that lost CPU time to another guest measures the
neighbour as well as the tools: wrk against itself moved 1.2-1.3x in p50 between runs. Every
comparison records each run's stolen share, so a reader can tell a disturbed run from a tool's
own difference.
"""


def cpu_jiffies():
    """(stolen, all) CPU time of the whole machine since boot, in jiffies: /proc/stat's first line
    (user nice system idle iowait irq softirq steal; guest time is counted in user)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(f) for f in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    if len(fields) < 8:
        return 0, 0
    return fields[7], sum(fields)


def stolen_share(before, after):
    """The share of the machine's CPU time between two `cpu_jiffies()` readings that was stolen
    (0 where /proc/stat says nothing)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0

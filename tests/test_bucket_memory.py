"""Bounded memory: a million distinct client addresses through `LocalBuckets` keep the process's
RSS under the documented bound (`BYTES_PER_BUCKET` x `max_buckets`), where seed 002's buckets grew
by one entry per address forever.

The run happens in a fresh interpreter (a subprocess), so the peak RSS it reports (`VmHWM`) is this
workload's and not whatever the test session allocated before; the baseline is taken after imports.
It calls `take_now`, the synchronous core of `take`, so that a million takes finish in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_router.guards.buckets import BYTES_PER_BUCKET, DEFAULT_MAX_BUCKETS

CLIENTS = 1_000_000

SCRIPT = """
import json, time
from edge_router.guards.buckets import LocalBuckets
from edge_router.guards.services import Rate

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

rate = Rate(interval_s=6.0, capacity=10)
buckets = LocalBuckets()
first = "/api/v1/orders#ip:2001:db8:0:0::1"
spent = all(buckets.take_now(first, rate).allowed for _ in range(10))
baseline = status("VmRSS")
started = time.perf_counter()
for n in range(1, CLIENTS):
    # IPv6 addresses (a scan from a /64, or privacy addresses) and IPv4 ones, all distinct
    if n % 2:
        address = f"2001:db8:{n >> 16 & 0xffff:x}:{n & 0xffff:x}::1"
    else:
        address = f"198.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    buckets.take_now("/api/v1/orders#ip:" + address, rate)
elapsed = time.perf_counter() - started
print(json.dumps({
    "spent": spent,
    "first_is_full_again": buckets.take_now(first, rate).remaining == 9,
    "buckets": len(buckets),
    "max_buckets": buckets.max_buckets,
    "baseline": baseline,
    "peak": status("VmHWM"),
    "now": status("VmRSS"),
    "seconds": elapsed,
}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_million_client_addresses_keep_memory_under_the_documented_cap() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("CLIENTS", str(CLIENTS))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["buckets"] == seen["max_buckets"] == DEFAULT_MAX_BUCKETS
    assert seen["spent"] and seen["first_is_full_again"]  # the oldest bucket was evicted
    bound = BYTES_PER_BUCKET * DEFAULT_MAX_BUCKETS  # ~51 MB
    grown = seen["peak"] - seen["baseline"]
    assert grown < bound, (
        f"RSS grew {grown / 1e6:.1f} MB (peak) for {CLIENTS} clients; bound {bound / 1e6:.1f} MB"
    )

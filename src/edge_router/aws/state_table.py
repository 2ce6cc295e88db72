"""The state table (`STATE_TABLE`, CONTRACT section 7) as every user reaches it: circuits and health
(`resilience`), rate-limit buckets and API keys (`guards`).

* `ITEM_PREFIX`: the router owns the items whose `id` starts with it;
* `CLIENT_SETTINGS`: the botocore settings of the one client all of them share. They bound a call,
  because a worker thread cannot be cancelled and botocore's defaults (legacy retries: 10 attempts
  on DynamoDB, 60 s connect and read timeouts) would hold one for minutes while the table is
  throttled or unreachable: 2 s to connect, 2 s to read, at most 2 attempts in botocore's standard
  mode. What a *request* may wait for is bounded much tighter by `aws.shield.StoreShield`.
"""

from __future__ import annotations

from typing import Any

ITEM_PREFIX = "er#"

CLIENT_SETTINGS: dict[str, Any] = {
    "connect_timeout": 2,
    "read_timeout": 2,
    "retries": {"mode": "standard", "total_max_attempts": 2},
}

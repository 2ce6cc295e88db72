"""The fleet's config change signal: one item in the state table (CONTRACT section 7's table).

    {"id": "er#config-version", "version": 42, "source": "ssm:/edge-router/config", "updated_at": 1796...}

`version` is the SSM parameter's own Version (monotonic): `edge-router flip`/`push` write it after
their PutParameter, and the router writes it when EventBridge tells it the parameter changed (a
change made by hand in the console too). Every instance reads this one small item at most every
`CONFIG_CHECK_SECONDS` (a GetItem, half a read unit) and reads SSM only when the version moved:
a flip reaches the whole fleet in seconds, and SSM sees one read per instance per change instead
of one per instance per TTL.

Both calls are synchronous boto3 (callers run them in a worker thread) with the state table's
bounded client settings; errors are `StateStoreError` (mapped once, in `aws_errors`).
"""

from __future__ import annotations

import time
from decimal import Decimal

from ..exceptions import StateStoreError
from .clients import aws_errors, error_code, resource
from .state_table import CLIENT_SETTINGS, ITEM_PREFIX

VERSION_ITEM = f"{ITEM_PREFIX}config-version"


def read_config_version(table: str) -> int | None:
    """The fleet's config version, or None when no change was ever signalled."""
    with aws_errors(StateStoreError, f"cannot read {VERSION_ITEM} from {table}"):
        answer = (
            resource("dynamodb", settings=CLIENT_SETTINGS)
            .Table(table)
            .get_item(Key={"id": VERSION_ITEM}, ProjectionExpression="version")
        )
    value = answer.get("Item", {}).get("version")
    return int(value) if isinstance(value, int | Decimal) else None


def bump_config_version(table: str, version: int, source: str) -> bool:
    """Set the version to `version` unless it is that new already (False then): concurrent
    bumpers (the CLI and the change event) converge on the highest."""
    from botocore.exceptions import ClientError

    try:
        with aws_errors(StateStoreError, f"cannot write {VERSION_ITEM} to {table}"):
            resource("dynamodb", settings=CLIENT_SETTINGS).Table(table).update_item(
                Key={"id": VERSION_ITEM},
                UpdateExpression="SET version = :v, #source = :s, updated_at = :t",
                ConditionExpression="attribute_not_exists(version) OR version < :v",
                ExpressionAttributeNames={"#source": "source"},
                ExpressionAttributeValues={":v": version, ":s": source, ":t": int(time.time())},
            )
    except StateStoreError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClientError) and error_code(cause) == "ConditionalCheckFailedException":
            return False
        raise
    return True

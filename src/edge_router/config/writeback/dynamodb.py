"""Write-back to a DynamoDB item, with a real conditional write (no lost update, no window)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ...aws.clients import aws_errors, error_code, resource
from ...exceptions import ConfigSourceError, WriteConflict, WriteError
from ..sources import document_of_item, dynamodb_item
from .base import (
    MAX_ATTEMPTS,
    Change,
    Document,
    Validate,
    Versioned,
    apply_change,
    json_like,
    pushed_text,
    require_object,
)


@dataclass(frozen=True)
class _Item:
    document: Document
    version: int
    has_version: bool
    value: Any  # the stored `value` attribute: a JSON string, or a map holding the document


def _dynamo_value(document: Document) -> Any:
    """A document as a DynamoDB map (numbers must be Decimal for boto3)."""
    return json.loads(json.dumps(document), parse_float=Decimal, parse_int=Decimal)


class DynamoDBWriter:
    """The item {id, value, version} in TABLE; writes are conditional on the version read.

    The condition is `#version = :read` when the item has a version, and
    `attribute_not_exists(#version) AND #value = :read_value` when it has none yet (an item written
    by hand or by the seed's tooling): a plain PutItem that dropped or never set the version is
    then still noticed, which `attribute_not_exists(version) OR version = :v` would miss.
    """

    def __init__(self, table: str, item_id: str) -> None:
        self.table_name = table
        self.item_id = item_id
        self.where = f"dynamodb:{table}/{item_id}"

    def _table(self) -> Any:
        return resource("dynamodb").Table(self.table_name)

    def _fetch(self) -> dict[str, Any] | None:
        return dynamodb_item(self.table_name, self.item_id, consistent=True)

    def read(self) -> Versioned:
        current = self._item()
        return Versioned(current.document, str(current.version), written=False)

    def _item(self) -> _Item:
        item = self._fetch()
        if item is None:
            raise ConfigSourceError(f"cannot read {self.where}: no such item")
        value = item.get("value")
        document = require_object(document_of_item(item, self.where), self.where)
        version = item.get("version")
        has_version = isinstance(version, Decimal | int)
        return _Item(document, int(version) if has_version else 0, has_version, value)  # type: ignore[arg-type]

    def _stored(self, document: Document, like: Any) -> Any:
        if isinstance(like, dict):
            return _dynamo_value(document)
        return json_like(document, like.decode() if isinstance(like, bytes) else str(like))

    def update(self, change: Change, validate: Validate) -> Versioned:

        for _ in range(MAX_ATTEMPTS):
            current = self._item()
            new = apply_change(change, validate, current.document)
            if new == current.document:
                return Versioned(current.document, str(current.version), written=False)
            names = {"#value": "value", "#version": "version"}
            values: dict[str, Any] = {
                ":value": self._stored(new, current.value),
                ":next": current.version + 1,
            }
            if current.has_version:
                condition = "#version = :read"
                values[":read"] = current.version
            else:
                condition = "attribute_not_exists(#version) AND #value = :read"
                values[":read"] = current.value
            try:
                with aws_errors(WriteError, f"cannot write {self.where}"):
                    self._table().update_item(
                        Key={"id": self.item_id},
                        UpdateExpression="SET #value = :value, #version = :next",
                        ConditionExpression=condition,
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues=values,
                    )
            except WriteError as exc:
                if error_code(exc.__cause__ or exc) == "ConditionalCheckFailedException":
                    continue  # someone wrote since we read: read again and re-apply the change
                raise
            return Versioned(new, str(current.version + 1))
        raise WriteConflict(f"{self.where} changed on each of {MAX_ATTEMPTS} attempts; nothing was written")

    def replace(self, document: Document, data: bytes, origin: Path) -> Versioned:
        """push: set the value whatever is there (creating the item), bumping the version.

        The version is the routers' change signal (they reload when it moves), so it only ever
        grows: one atomic increment, on the condition that it is a number (or absent: 1)."""
        existing = self._fetch()
        keep_map = existing is not None and isinstance(existing.get("value"), dict)
        text = pushed_text(document, data, origin)
        try:
            with aws_errors(WriteError, f"cannot write {self.where}"):
                answer = self._table().update_item(
                    Key={"id": self.item_id},
                    UpdateExpression="SET #value = :value, #version = if_not_exists(#version, :zero) + :one",
                    ConditionExpression="attribute_not_exists(#version) OR attribute_type(#version, :number)",
                    ExpressionAttributeNames={"#value": "value", "#version": "version"},
                    ExpressionAttributeValues={
                        ":value": _dynamo_value(document) if keep_map else text,
                        ":zero": 0,
                        ":one": 1,
                        ":number": "N",
                    },
                    ReturnValues="UPDATED_NEW",
                )
        except WriteError as exc:
            if error_code(exc.__cause__ or exc) == "ConditionalCheckFailedException":
                raise WriteError(
                    f"cannot write {self.where}: its `version` attribute is not a number "
                    "(the routers' change signal); nothing was written"
                ) from exc
            raise
        version = answer.get("Attributes", {}).get("version", 0)
        return Versioned(document, str(int(version)))

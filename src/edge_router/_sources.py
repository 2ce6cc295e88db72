"""Config sources: where a config document is read from (CONTRACT section 2).

    path/to/file.json|.yaml|.yml   a local file
    ssm:/name/of/parameter         an SSM parameter (String or SecureString) holding JSON
    dynamodb:TABLE/ID              the item whose key `id` is ID, its attribute `value` holding JSON

Reads are synchronous (boto3 is); the config cache runs them in a worker thread. AWS reads go
through Powertools Parameters, whose clients honour AWS_ENDPOINT_URL. Powertools' own cache is
bypassed (`force_fetch`): it has no last-good fallback, so `ConfigCache` keeps its own.
Every failure is mapped here to ConfigSourceError or ConfigInvalidError, a document nested too
deeply for the parsers' recursion included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol


class ConfigSource(Protocol):
    """Reads one config document. `describe()` is what logs and /health name."""

    def read(self) -> Any: ...

    def describe(self) -> str: ...


def _parse_json(text: str | bytes, where: str) -> Any:
    from ._exceptions import ConfigInvalidError

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigInvalidError([f"(document): {where} is not valid JSON: {exc}"]) from None
    except RecursionError:
        raise _too_deep(where) from None


def _too_deep(where: str) -> Exception:
    """The parsers recurse once per nesting level: past the interpreter's limit they raise RecursionError.

    That depth is far beyond what `load_config` accepts, so the reason is the same one it gives.
    """
    from ._config import TOO_DEEP
    from ._exceptions import ConfigInvalidError

    return ConfigInvalidError([f"(document): {where} is {TOO_DEEP}"])


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; make a document JSON-shaped again."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class FileSource:
    path: Path

    def describe(self) -> str:
        return str(self.path)

    def read(self) -> Any:
        from ._exceptions import ConfigInvalidError, ConfigSourceError

        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigSourceError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if self.path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigInvalidError([f"(document): {self.path} is not valid YAML: {exc}"]) from None
            except RecursionError:
                raise _too_deep(str(self.path)) from None
        return _parse_json(text, str(self.path))


@dataclass(frozen=True, slots=True)
class SSMSource:
    name: str

    def describe(self) -> str:
        return f"ssm:{self.name}"

    def read(self) -> Any:
        from aws_lambda_powertools.utilities.parameters import get_parameter
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        from ._exceptions import ConfigSourceError

        try:
            text = get_parameter(self.name, decrypt=True, force_fetch=True)
        except GetParameterError as exc:
            raise ConfigSourceError(f"cannot read {self.describe()}: {exc}") from None
        return _parse_json(text, self.describe())


@dataclass(frozen=True, slots=True)
class DynamoDBSource:
    table: str
    item_id: str

    def describe(self) -> str:
        return f"dynamodb:{self.table}/{self.item_id}"

    def read(self) -> Any:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        from ._exceptions import ConfigSourceError

        try:
            value = _provider(self.table).get(self.item_id, force_fetch=True)
        except GetParameterError as exc:
            reason = "no such item" if "'Item'" in str(exc) else str(exc)
            raise ConfigSourceError(f"cannot read {self.describe()}: {reason}") from None
        if isinstance(value, str | bytes):
            return _parse_json(value, self.describe())
        try:
            return _plain(value)  # a map attribute holding the document itself
        except RecursionError:
            raise _too_deep(self.describe()) from None


_providers: dict[str, Any] = {}


def _provider(table: str) -> Any:
    # One provider (and boto3 resource) per table for the life of the process: creating a boto3
    # client costs ~60 ms, too much to pay on every refresh.
    if table not in _providers:
        from aws_lambda_powertools.utilities.parameters import DynamoDBProvider

        _providers[table] = DynamoDBProvider(table_name=table)
    return _providers[table]


def parse_source(spec: str) -> ConfigSource:
    """Turn a SOURCE string into a ConfigSource; ValueError says what is wrong with it."""
    if spec.startswith("ssm:"):
        name = spec[4:]
        if not name:
            raise ValueError("ssm: source needs a parameter name, e.g. ssm:/edge-router/config")
        return SSMSource(name)
    if spec.startswith("dynamodb:"):
        table, _, item_id = spec[9:].partition("/")
        if not table or not item_id:
            raise ValueError("dynamodb: source needs TABLE/ID, e.g. dynamodb:edge-router-config/main")
        return DynamoDBSource(table, item_id)
    return FileSource(Path(spec))

"""Config sources: where a config document is read from (CONTRACT section 2).

    path/to/file.json|.yaml|.yml   a local file
    ssm:/name/of/parameter         an SSM parameter (String or SecureString) holding JSON
    dynamodb:TABLE/ID              the item whose key `id` is ID, its attribute `value` holding JSON

Reads are synchronous (boto3 is); the config cache runs them in a worker thread. AWS calls go
through `aws/clients.py` (one client per process, `AWS_ENDPOINT_URL` honoured, botocore errors
mapped there). Powertools Parameters is not used for these reads: its cache would be bypassed
anyway (it has no last-good fallback, so `ConfigCache` keeps its own) and its `GetParameterError`
hides the AWS error code that tells "no such parameter" from "access denied".

The parse helpers here (`parse_json_text`, `parse_file`, `plain`) are also what flip/push read
with, so a document the router could not load is refused by them too. Every failure is a
`ConfigSourceError` or `ConfigInvalidError`, a document nested too deeply for a parser included.

YAML aliases are bounded as nesting is. An alias (`*name`) stands for the whole node its anchor
(`&name`) names, and every step after parsing (`${VAR}` substitution, pydantic, the redaction of
/_config/route) walks the document as if each alias were a copy: nine anchors of nine aliases each
("billion laughs") are 387 million nodes in a 300-byte file, and `edge-router validate` ran until
killed. The YAML loader here counts, before anything is built, how many nodes the aliases add
once expanded, and refuses past `MAX_ALIAS_NODES` (100,000: more than a config that shares a
block among thousands of routes needs, and validated in well under a second), as it refuses an
alias that names a node containing it (an infinite document). A merge key (`<<: *defaults`) is an
alias too and counts the same way (an upper bound: keys the mapping already has are not copied).
The count is one pass over the distinct nodes, so a refused document costs what parsing it did.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..aws.clients import CONFIG_READ_SETTINGS, aws_errors, client, error_code, resource
from ..exceptions import ConfigInvalidError, ConfigSourceError
from .load import TOO_DEEP

if TYPE_CHECKING:
    from yaml import Node

# The most nodes YAML aliases may add to a document once expanded (see the module docstring).
MAX_ALIAS_NODES = 100_000


Version = Hashable  # what `ConfigSource.version()` returns: compared for equality only


class ConfigSource(Protocol):
    """Reads one config document. `describe()` is what logs and /health name.

    `version()` is a cheap look at which version the source holds now, asked every
    `CONFIG_CHECK_SECONDS`: a file's mtime and size, a DynamoDB item's `version` attribute, the
    state table's `er#config-version` item for SSM. None: it cannot tell (no state table), and
    only the TTL brings a change. It may raise ConfigSourceError / StateStoreError.
    `reload_spread_s`: how far apart instances spread their re-reads after a change (a burst of
    GetParameter calls from a fleet would meet SSM's account-wide quota; a file needs none).
    """

    @property
    def reload_spread_s(self) -> float: ...

    def read(self) -> Any: ...

    def read_versioned(self) -> tuple[Any, Version | None]:
        """The document and the version it was read at (from the same read where the source
        can tell: SSM's parameter Version, the DynamoDB item's `version`)."""
        ...

    def describe(self) -> str: ...

    def version(self) -> Version | None: ...


def _too_deep(where: str) -> ConfigInvalidError:
    # The parsers recurse once per nesting level and raise RecursionError past the interpreter's
    # limit, far beyond what `load_config` accepts: the reason given is the same.
    return ConfigInvalidError([f"(document): {where} is {TOO_DEEP}"])


def parse_json_text(text: str | bytes, where: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigInvalidError([f"(document): {where} is not valid JSON: {exc}"]) from None
    except RecursionError:
        raise _too_deep(where) from None


def is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def parse_file(path: Path, data: bytes) -> Any:
    """A file's document: YAML for `.yaml`/`.yml`, else JSON; strict UTF-8 either way."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigInvalidError([f"(document): {path} is not UTF-8: {exc}"]) from None
    if not is_yaml(path):
        return parse_json_text(text, str(path))
    import yaml

    try:
        return yaml.load(text, Loader=_bounded_yaml_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigInvalidError([f"(document): {path} is not valid YAML: {exc}"]) from None
    except RecursionError:
        raise _too_deep(str(path)) from None
    except AliasExpansionError as exc:
        raise ConfigInvalidError([f"(document): {path}: {exc}"]) from None


class AliasExpansionError(ValueError):
    """A YAML document whose aliases expand past `MAX_ALIAS_NODES`, or into themselves."""


@functools.cache
def _bounded_yaml_loader() -> type[Any]:
    """`yaml.SafeLoader` that checks each composed document's aliases before building it.

    Made on first use: PyYAML is imported only when a YAML file is read."""
    import yaml

    class BoundedAliasLoader(yaml.SafeLoader):
        def compose_document(self) -> Node | None:
            node = super().compose_document()
            if node is not None:
                check_aliases(node)
            return node

    return BoundedAliasLoader


def check_aliases(root: Node, limit: int = MAX_ALIAS_NODES) -> None:
    """AliasExpansionError when aliases add more than `limit` nodes to the document under `root`
    once expanded, or when one names a node that contains it.

    An alias is the very node its anchor names (PyYAML shares it), so the composed document is a
    graph: its expanded size is counted bottom-up once per distinct node (iteratively, in time
    linear in the text), and what aliases add is that size less the distinct nodes.
    """
    sizes: dict[int, int] = {}  # expanded size by id(node), once counted
    open_nodes: set[int] = set()  # nodes whose children are being counted: the current path
    pending: list[tuple[Node, bool]] = [(root, False)]
    while pending:
        node, children_counted = pending.pop()
        key = id(node)
        if children_counted:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
        elif key in open_nodes:
            raise AliasExpansionError(
                "a YAML alias refers to a node that contains it (the document would be infinite)"
            )
        elif key not in sizes:
            open_nodes.add(key)
            pending.append((node, True))
            pending.extend((child, False) for child in _children(node))
    added = sizes[id(root)] - len(sizes)
    if added > limit:
        raise AliasExpansionError(
            f"YAML aliases expand it by {added:,} nodes, more than the {limit:,} allowed "
            "(an alias repeats the whole node its anchor names)"
        )


def _children(node: Node) -> Iterator[Node]:
    """A sequence's items, a mapping's keys and values; a scalar has none."""
    value = node.value
    if isinstance(value, list):
        for item in value:
            if isinstance(item, tuple):
                yield from item
            else:
                yield item


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; make a document JSON-shaped again."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigSourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def ssm_parameter(selector: str) -> tuple[str, int, str]:
    """(text, version, type) of an SSM parameter (`selector`: its name, or `name:version`)."""
    from botocore.exceptions import ClientError

    try:
        with aws_errors(ConfigSourceError, f"cannot read ssm:{selector}"):
            ssm = client("ssm", settings=CONFIG_READ_SETTINGS)
            parameter = ssm.get_parameter(Name=selector, WithDecryption=True)["Parameter"]
    except ConfigSourceError as exc:
        if isinstance(exc.__cause__, ClientError) and error_code(exc.__cause__) in (
            "ParameterNotFound",
            "ParameterVersionNotFound",
        ):
            raise ConfigSourceError(f"cannot read ssm:{selector}: no such parameter") from None
        raise
    return str(parameter["Value"]), int(parameter["Version"]), str(parameter["Type"])


def dynamodb_item(table: str, item_id: str, *, consistent: bool = False) -> dict[str, Any] | None:
    """The item whose key `id` is `item_id`, or None."""
    with aws_errors(ConfigSourceError, f"cannot read dynamodb:{table}/{item_id}"):
        answer = (
            resource("dynamodb", settings=CONFIG_READ_SETTINGS)
            .Table(table)
            .get_item(Key={"id": item_id}, ConsistentRead=consistent)
        )
    item = answer.get("Item")
    return dict(item) if item is not None else None


@dataclass(frozen=True, slots=True)
class FileSource:
    path: Path
    reload_spread_s: float = 0.0

    def describe(self) -> str:
        return str(self.path)

    def read(self) -> Any:
        return parse_file(self.path, read_file(self.path))

    def read_versioned(self) -> tuple[Any, Version | None]:
        version = self.version()  # before the read: a write after it is seen by the next check
        return self.read(), version

    def version(self) -> Version | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None  # the read will say what is wrong
        return (stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True, slots=True)
class SSMSource:
    name: str
    state_table: str | None = None  # where the fleet's change signal lives (`aws.config_version`)
    reload_spread_s: float = 2.0

    def describe(self) -> str:
        return f"ssm:{self.name}"

    def read(self) -> Any:
        return self.read_versioned()[0]

    def read_versioned(self) -> tuple[Any, Version | None]:
        text, version, _ = ssm_parameter(self.name)
        return parse_json_text(text, self.describe()), version

    def version(self) -> Version | None:
        if self.state_table is None:
            return None
        from ..aws.config_version import read_config_version

        return read_config_version(self.state_table)


@dataclass(frozen=True, slots=True)
class DynamoDBSource:
    table: str
    item_id: str
    reload_spread_s: float = 2.0

    def describe(self) -> str:
        return f"dynamodb:{self.table}/{self.item_id}"

    def version(self) -> Version | None:
        """The config item's own `version` attribute (`edge-router push` increments it)."""
        with aws_errors(ConfigSourceError, f"cannot read the version of {self.describe()}"):
            answer = (
                resource("dynamodb", settings=CONFIG_READ_SETTINGS)
                .Table(self.table)
                .get_item(Key={"id": self.item_id}, ProjectionExpression="version")
            )
        value = answer.get("Item", {}).get("version")
        return int(value) if isinstance(value, int | Decimal) else None

    def read(self) -> Any:
        return self.read_versioned()[0]

    def read_versioned(self) -> tuple[Any, Version | None]:
        item = dynamodb_item(self.table, self.item_id)
        if item is None:
            raise ConfigSourceError(f"cannot read {self.describe()}: no such item")
        version = item.get("version")
        return document_of_item(item, self.describe()), int(version) if isinstance(
            version, int | Decimal
        ) else None


def document_of_item(item: dict[str, Any], where: str) -> Any:
    """The document an item's `value` holds: a JSON string, or a map holding the document itself."""
    value = item.get("value")
    if isinstance(value, str | bytes):
        return parse_json_text(value, where)
    if not isinstance(value, dict):
        raise ConfigInvalidError([f"(document): {where}: attribute value holds no JSON document"])
    try:
        return plain(value)
    except RecursionError:
        raise _too_deep(where) from None


def parse_source(spec: str, *, state_table: str | None = None) -> ConfigSource:
    """Turn a SOURCE string into a ConfigSource; ValueError says what is wrong with it.
    `state_table`: where an SSM source's change signal is read (`STATE_TABLE`)."""
    if spec.startswith("ssm:"):
        name = spec[4:]
        if not name:
            raise ValueError("ssm: source needs a parameter name, e.g. ssm:/edge-router/config")
        return SSMSource(name, state_table)
    if spec.startswith("dynamodb:"):
        table, _, item_id = spec[9:].partition("/")
        if not table or not item_id:
            raise ValueError("dynamodb: source needs TABLE/ID, e.g. dynamodb:edge-router-config/main")
        return DynamoDBSource(table, item_id)
    return FileSource(Path(spec))

"""Where instances share what they learn of backends: the state table (`STATE_TABLE`), or nothing.

    class StateStore(Protocol):
        async def read_circuits(backends) -> {backend: CircuitRecord}
        async def write_circuit(backend, record, *, expected_version) -> bool
        async def read_health() -> HealthSnapshot | None
        async def write_health(snapshot, *, previous) -> bool

* Circuits: every instance counts failures itself and writes only *transitions* (CLOSED -> OPEN,
  OPEN -> HALF_OPEN, ...), each as the next `version` of the circuit, with a conditional write
  (`expected_version` must still be the stored one; 0: nothing stored yet). A write that loses the
  race returns False and writes nothing: the caller reads what won and adopts it, so two instances
  tripping at once lose no transition. Instances read circuits through a short cache (<= 5 s).
* Health: one scheduled round of probes (Lambda's EventBridge tick) writes every backend's
  `HealthStatus` as one snapshot, conditionally on the snapshot it started from; instances read it
  through a cache of <= 30 s (seed 001).
* Every method raises only `StateStoreError`; callers log it and go on with what this instance
  knows (fail open), so a state-table outage never takes routing down. Callers reach the table
  through a `shield.StoreShield`, which bounds what a request waits for it and backs off a table
  that fails or hangs, so the outage does not slow routing down either.

`LocalStateStore` shares nothing (no `STATE_TABLE`: all state is per process). The DynamoDB
implementation is `dynamodb_store.DynamoDBStateStore`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .breaker import CircuitState
from .health import HealthStatus


@dataclass(frozen=True, slots=True)
class CircuitRecord:
    """A circuit's shared state: the last transition any instance wrote."""

    state: CircuitState
    opened_at: float | None
    version: int  # 1 for the first transition ever written, +1 for each one after it
    updated_at: float


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """One round of probes, every backend's status after it."""

    checked_at: float
    statuses: Mapping[str, HealthStatus] = field(default_factory=dict)


class StateStore(Protocol):
    async def read_circuits(self, backends: Sequence[str]) -> dict[str, CircuitRecord]:
        """The stored circuits of these backends (those never written are absent)."""
        ...

    async def write_circuit(self, backend: str, record: CircuitRecord, *, expected_version: int) -> bool:
        """Store `record` if the stored version is still `expected_version` (0: none); else False."""
        ...

    async def read_health(self) -> HealthSnapshot | None: ...

    async def write_health(self, snapshot: HealthSnapshot, *, previous: HealthSnapshot | None) -> bool:
        """Store `snapshot` if the stored one is still `previous` (None: none); else False."""
        ...


class LocalStateStore:
    """No shared state: every instance keeps its own (no STATE_TABLE)."""

    async def read_circuits(self, backends: Sequence[str]) -> dict[str, CircuitRecord]:
        return {}

    async def write_circuit(self, backend: str, record: CircuitRecord, *, expected_version: int) -> bool:
        return True

    async def read_health(self) -> HealthSnapshot | None:
        return None

    async def write_health(self, snapshot: HealthSnapshot, *, previous: HealthSnapshot | None) -> bool:
        return True

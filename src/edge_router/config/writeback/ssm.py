"""Write-back to an SSM parameter, with no lost update although SSM has no compare-and-set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...aws.clients import aws_errors, client
from ...exceptions import ConfigSourceError, WriteConflict, WriteError
from ..sources import parse_json_text, ssm_parameter
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


class SSMWriter:
    """Read-modify-write of one SSM parameter holding JSON.

    SSM has no compare-and-set, but it numbers a parameter's versions one by one and PutParameter
    answers with the number of the version it created. So a write can be checked after the fact:

    1. Read the parameter (text T at version K), apply the change, validate.
    2. Read the current version again; if it moved past K, someone wrote meanwhile: take theirs as
       the new base and go back to applying the change. Nothing of ours has been written yet.
    3. PutParameter. If it answers K+1, no version came between our base and our write: it is
       exactly what a compare-and-set on K would have written. Done.
    4. If it answers N > K+1, versions K+1..N-1 are someone else's and ours (built on K) now hides
       them. Read version N-1 (`NAME:N-1`), re-apply the same change on it, validate, and write
       again; that write must come back as N+1, i.e. with nothing but our own superseded version
       between its base and itself. Then the latest version holds their change and ours: the
       concurrent change was hidden for one round trip, never lost. If it answers higher still,
       repeat from 4 (bounded by MAX_ATTEMPTS, then WriteConflict).

    If our change is invalid on top of theirs, the text of version N-1 is written back verbatim
    (their document is live again, without our change) and WriteConflict says so.

    What this cannot close, for want of a compare-and-set in SSM: during the round trip between a
    superseded write (step 4) and its repair, the live parameter lacks the other change, so a
    router refreshing in exactly that window keeps it until its next refresh or cache-flush, and a
    third writer that reads that very version and builds on it makes the hidden change unrecoverable.
    Both need writers racing within milliseconds of each other (step 2 keeps the window to the
    PutParameter round trip). Writers not following this protocol (the console, `aws ssm
    put-parameter`) are kept when they write before our PutParameter; after it, they replace ours,
    as a plain put does. DynamoDB sources have a real conditional write and none of these limits.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.where = f"ssm:{name}"

    def _document(self, text: str, where: str) -> Document:
        return require_object(parse_json_text(text, where), where)

    def read(self) -> Versioned:
        text, version, _ = ssm_parameter(self.name)
        return Versioned(self._document(text, self.where), str(version), written=False)

    def _put_args(self, parameter_type: str | None) -> dict[str, Any]:
        """What PutParameter needs to keep the parameter as it is: type, KMS key, tier, description."""
        try:
            with aws_errors(WriteError, "ssm:DescribeParameters"):
                found = client("ssm").describe_parameters(
                    ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [self.name]}]
                )["Parameters"]
        except WriteError as exc:
            if parameter_type == "SecureString":
                raise WriteError(
                    f"cannot write {self.where}: its KMS key could not be read ({exc}); "
                    "refusing to re-encrypt it with another key"
                ) from None
            return {"Type": parameter_type or "String", "Overwrite": parameter_type is not None}
        if not found:
            return {"Type": parameter_type or "String", "Overwrite": parameter_type is not None}
        described: dict[str, Any] = dict(found[0])
        args: dict[str, Any] = {"Type": parameter_type or described.get("Type", "String"), "Overwrite": True}
        if args["Type"] == "SecureString" and described.get("KeyId"):
            args["KeyId"] = described["KeyId"]
        for key in ("Tier", "Description", "DataType", "AllowedPattern"):
            if described.get(key):
                args[key] = described[key]
        return args

    def _put(self, text: str, args: dict[str, Any]) -> int:
        with aws_errors(WriteError, f"cannot write {self.where}"):
            return int(client("ssm").put_parameter(Name=self.name, Value=text, **args)["Version"])

    def update(self, change: Change, validate: Validate) -> Versioned:
        base_text, known, parameter_type = ssm_parameter(self.name)
        base = self._document(base_text, self.where)
        new = apply_change(change, validate, base)
        if new == base:
            return Versioned(base, str(known), written=False)
        args = self._put_args(parameter_type)
        superseded = False  # True once a write of ours landed on top of someone else's version
        for _ in range(MAX_ATTEMPTS):
            if not superseded:
                latest_text, latest, _ = ssm_parameter(self.name)
                if latest != known:  # step 2: someone wrote since we read; nothing of ours is out
                    base_text, base, known = latest_text, self._document(latest_text, self.where), latest
                    new = apply_change(change, validate, base)
                    if new == base:
                        return Versioned(base, str(known), written=False)
                    continue
            written = self._put(json_like(new, base_text), args)
            if written == known + 1:
                return Versioned(new, str(written))
            # step 4: versions known+1 .. written-1 are someone else's; rebase on the one below ours
            superseded = True
            below = written - 1
            base_text, _, _ = ssm_parameter(f"{self.name}:{below}")
            base = self._document(base_text, f"{self.where}:{below}")
            known = written
            try:
                new = apply_change(change, validate, base)
            except Exception as exc:
                restored = self._put(base_text, args)
                outcome = (
                    f"version {below} was written back as version {restored}, without this change"
                    if restored == known + 1
                    else f"writing version {below} back landed as version {restored} after another "
                    f"write; check the parameter's history"
                )
                raise WriteConflict(
                    f"{self.where}: a concurrent change (version {below}) makes this change invalid: "
                    f"{exc}; {outcome}"
                ) from exc
        if superseded:
            raise WriteConflict(
                f"{self.where} changed on each of {MAX_ATTEMPTS} attempts; the live version {known} "
                f"(this change) may lack a concurrent change: check the parameter's history"
            )
        raise WriteConflict(f"{self.where} changed on each of {MAX_ATTEMPTS} attempts; nothing was written")

    def replace(self, document: Document, data: bytes, origin: Path) -> Versioned:
        """push: write the document whatever is there, keeping the type/key/tier of an existing parameter."""
        text = pushed_text(document, data, origin)
        try:
            _, _, parameter_type = ssm_parameter(self.name)
        except ConfigSourceError as exc:
            if "no such parameter" not in str(exc):
                raise
            parameter_type = None
        return Versioned(document, str(self._put(text, self._put_args(parameter_type))))

"""`Diagnostics`: what compiling a config found, field by field."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Diagnostics:
    """Problems (the config is refused) and warnings (it loads; they are logged), field by field."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, where: str, message: object) -> None:
        self.problems.append(f"{where}: {message}")

    def warn(self, where: str, message: object) -> None:
        self.warnings.append(f"{where}: {message}")

"""Named health checks: liveness (``healthz``) and readiness (``readyz``).

Whoever runs registers its checks: a check is a function returning ``None`` when
all is well, or one line saying what is wrong (an exception it raises counts as
that line). The HTTP endpoint and the gRPC health service read the same checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["KINDS", "Check", "CheckResult", "Health"]

Kind = Literal["healthz", "readyz"]
#: ``healthz``: the process works (restart it if not); ``readyz``: it does its job now.
KINDS: tuple[Kind, ...] = ("healthz", "readyz")
Check = Callable[[], "str | None"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one named check."""

    name: str
    ok: bool
    reason: str | None = None


class Health:
    """The named checks of one process part (a synchronizer, a ``core``)."""

    def __init__(self) -> None:
        self._checks: dict[Kind, dict[str, Check]] = {kind: {} for kind in KINDS}
        self._lock = threading.Lock()

    def add(self, kind: Kind, name: str, check: Check) -> None:
        """Register ``check`` as ``/<kind>/<name>`` (replacing one of that name)."""
        if kind not in KINDS:
            raise ValueError(f"unknown health check kind {kind!r}: expected healthz or readyz")
        with self._lock:
            self._checks[kind][name] = check

    def run(self, kind: Kind, name: str | None = None) -> list[CheckResult]:
        """Run every check of ``kind`` (or only ``name``; ``KeyError`` if there is none)."""
        with self._lock:
            checks = dict(self._checks[kind])
        if name is not None:
            checks = {name: checks[name]}
        return [_run(n, check) for n, check in checks.items()]

    def ok(self, kind: Kind) -> bool:
        """True when every check of ``kind`` passes."""
        return all(result.ok for result in self.run(kind))


def _run(name: str, check: Check) -> CheckResult:
    try:
        reason = check()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if reason is None:
        return CheckResult(name, True)
    return CheckResult(name, False, " ".join(str(reason).split()) or "failed")

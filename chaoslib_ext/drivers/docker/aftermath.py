"""What became of the containers a lasting fault held, checked when it ends.

A container that restarted meanwhile lost the fault with its old namespace: recorded, not an
error (a restart policy healing is an outcome worth seeing). One that exited or was removed means
the fault did not last as planned, so the run cannot be judged as planned: exit code 3, after
every other container was put back, with the report saying which and how it ended.
"""

from __future__ import annotations

from typing import Any, Protocol

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import Fault, FaultError, FaultRecord


class TargetLost(FaultError):
    """A container a fault held exited or was removed before the fault ended."""

    def __init__(self, message: str, records: list[FaultRecord], hint: str) -> None:
        super().__init__(RunAborted(message, hint=hint), records)


class ContainerTracker(Protocol):
    def fate(self, instance: Any) -> tuple[str, dict[str, Any]]: ...


def settle(
    fault: Fault, target: ContainerTracker, outcomes: list[tuple[Any, dict[str, Any]]]
) -> list[FaultRecord]:
    """Records for a reverted fault, one per (container instance, what the revert found there);
    pass them to raise_if_lost."""
    records = []
    for instance, detail in outcomes:
        fate, facts = target.fate(instance)
        action = "revert" if fate == "running" else fate
        records.append(fault.record(action, instance.name, {**detail, **facts}))
    return records


def raise_if_lost(fault: Fault, records: list[FaultRecord]) -> None:
    lost = [record for record in records if record.action in ("exited", "removed")]
    if not lost:
        return
    first = lost[0]
    how = first.action
    if first.action == "exited":
        how += f" (exit code {first.detail.get('exit_code')}"
        how += ", OOM-killed)" if first.detail.get("oom_killed") else ")"
    raise TargetLost(
        f"container {first.target} {how} during fault #{fault.index + 1} {fault.label}, "
        "so the fault did not last as planned",
        records,
        hint=f"see `docker logs {first.target}`; a restart policy brings it back where that is wanted",
    )

"""What became of the containers a lasting fault held, checked when it ends.

A container that restarted meanwhile lost the fault with its old namespace: recorded, not an
error (a restart policy healing is an outcome worth seeing). One that exited or was removed means
the fault did not last as planned, so the run cannot be judged as planned: exit code 3, after
every other container was put back, with the report saying which and how it ended.
"""

from __future__ import annotations

from typing import Any

from chaoslib_ext.drivers.docker.engine import ContainerInstance, fate
from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import Outcome, TargetLost


def settle(client: Any, results: list[tuple[ContainerInstance, dict[str, Any]]]) -> list[Outcome]:
    """Outcomes of a reverted fault, one per (container start, what the revert found there); pass
    them to raise_if_lost."""
    outcomes = []
    for instance, detail in results:
        state, facts = fate(client, instance)
        action = "revert" if state == "running" else state
        outcomes.append(Outcome(action, instance.name, {**detail, **facts}))
    return outcomes


def raise_if_lost(outcomes: list[Outcome]) -> None:
    lost = [outcome for outcome in outcomes if outcome.action in ("exited", "removed")]
    if not lost:
        return
    first = lost[0]
    how = first.action
    if first.action == "exited":
        how += f" (exit code {first.detail.get('exit_code')}"
        how += ", OOM-killed)" if first.detail.get("oom_killed") else ")"
    raise TargetLost(
        RunAborted(
            f"container {first.target} {how}",
            hint=f"see `docker logs {first.target}`; a restart policy brings it back where that is wanted",
        ),
        outcomes,
    )

"""One fault of a run: its seed, the targets it chooses at each injection, and the records of
what it did, stamped for the report and the timeline."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import Actions, FaultSpec, Outcome, PartialFailure, TargetLost, choose


@dataclass(frozen=True)
class FaultRecord:
    """What one action of a fault did, for the report and the timeline."""

    at: float
    fault_index: int
    fault: str
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


class FaultError(RunAborted):
    """A fault failed part-way: what it did before (its records) still belongs in the report."""

    def __init__(self, error: RunAborted, records: list[FaultRecord], lost: bool = False) -> None:
        super().__init__(error.message, where=error.where, hint=error.hint)
        self.records = records
        self.lost = lost  # a target it held did not stay: reverted, but it did not last as planned


def tag_of(index: int) -> str:
    """The tag of the experiment's fault number `index` (from 0)."""
    return f"fault-{index + 1}"


class Injection:
    def __init__(self, index: int, spec: FaultSpec, seed: int) -> None:
        self.index = index
        self.spec = spec
        self.seed = seed
        self.rng = random.Random(seed)

    @property
    def label(self) -> str:
        return self.spec.kind

    @property
    def tag(self) -> str:
        """What the driver keeps this fault's changes under (and names its rules with)."""
        return tag_of(self.index)

    @property
    def lasting(self) -> bool:
        return self.spec.params.lasting

    def record(self, action: str, target: str, detail: dict[str, Any]) -> FaultRecord:
        """What this fault just did to `target`, stamped now."""
        return FaultRecord(time.time(), self.index, self.label, action, target, detail)

    def apply(self, driver: Actions) -> list[FaultRecord]:
        """Choose the victims among the targets the selection names now (the seeded draw plan
        shows), and inject once."""
        spec, params = self.spec, self.spec.params
        victims = None
        if spec.selection is not None:
            found = driver.targets(spec.selection, params.scope, str(spec.where))
            victims = choose(self.rng, found, spec.selection.size(len(found), params.every_by_default))
        return self._stamped(lambda: params.apply(driver, victims, self.tag, self.rng.randrange(2**31)))

    def revert(self, driver: Actions) -> list[FaultRecord]:
        return self._stamped(lambda: self.spec.params.revert(driver, self.tag))

    def _stamped(self, act: Any) -> list[FaultRecord]:
        try:
            outcomes: list[Outcome] = act()
        except PartialFailure as failure:
            records = [self.record(o.action, o.target, o.detail) for o in failure.done]
            if isinstance(failure, TargetLost):
                lost = RunAborted(
                    f"{failure.message} during fault #{self.index + 1} {self.label}, so the fault did not "
                    "last as planned",
                    hint=failure.hint,
                )
                raise FaultError(lost, records, lost=True) from None
            raise FaultError(failure, records) from None
        return [self.record(o.action, o.target, o.detail) for o in outcomes]

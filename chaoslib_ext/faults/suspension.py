"""What container-stop and container-pause share: the targets are held stopped (or frozen) for
the fault's window and let go at its end; the driver records the undo before it acts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from chaoslib_ext.faults.base import (
    Actions,
    FaultKind,
    Outcome,
    SpecContext,
    Suspension,
    Target,
    each_victim,
)


@dataclass(frozen=True)
class SuspendFault(FaultKind):
    how: ClassVar[Suspension]
    scope = "process"
    lasting = True
    every_by_default = False

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls()

    def apply(self, driver: Actions, victims: Sequence[Target] | None, tag: str, seed: int) -> list[Outcome]:
        return each_victim(victims, self.how, lambda victim: driver.suspend(victim, self.how, tag))

    def revert(self, driver: Actions, tag: str) -> list[Outcome]:
        return driver.resume(tag)

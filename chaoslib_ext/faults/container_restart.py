"""container-restart: restart a share of the targets (stop with a grace, start again), at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from chaoslib_ext.faults.base import Actions, FaultKind, Outcome, SpecContext, Target, each_victim
from chaoslib_ext.faults.registry import register


@register
@dataclass(frozen=True)
class ContainerRestart(FaultKind):
    kind = "container-restart"
    scope = "process"
    lasting = False
    every_by_default = False

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls()

    def describe(self, unit: str = "connections") -> str:
        return "restart"

    def apply(self, driver: Actions, victims: Sequence[Target] | None, tag: str, seed: int) -> list[Outcome]:
        return each_victim(victims, "restart", driver.restart)

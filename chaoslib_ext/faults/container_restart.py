"""container-restart: restart a share of the targets (stop with a grace, start again), at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import Actions, FaultKind, Outcome, PartialFailure, SpecContext, Target
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
        done: list[Outcome] = []
        for victim in victims or ():
            try:
                detail = driver.restart(victim)
            except RunAborted as error:
                raise PartialFailure(error, done) from None
            done.append(Outcome("restart", victim.name, detail))
        return done

"""pod-kill (also written container-kill): a signal to a share of the running targets, as
`kubectl delete pod --force` or `docker kill` would send it; repeated every `interval` if given.
It heals by itself (the restart policy), so there is nothing to revert."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from chaoslib_ext.faults.base import (
    SIGNALS,
    Actions,
    FaultKind,
    Outcome,
    Signal,
    SpecContext,
    Target,
    each_victim,
)
from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.schema import DURATION
from chaoslib_ext.units import parse_duration


@register
@dataclass(frozen=True)
class PodKill(FaultKind):
    kind = "pod-kill"
    aliases = ("container-kill",)
    scope = "process"
    lasting = False
    every_by_default = False
    properties: ClassVar[dict[str, Any]] = {"signal": {"enum": list(SIGNALS)}, "interval": DURATION}

    signal: Signal = "SIGKILL"
    interval: float | None = None  # seconds between injections (None: once)

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        interval = parse_duration(spec["interval"]) if "interval" in spec else None
        return cls(spec.get("signal", "SIGKILL"), interval)

    def describe(self, unit: str = "connections") -> str:
        return self.signal

    @property
    def repeat_every(self) -> float | None:
        return self.interval

    def apply(self, driver: Actions, victims: Sequence[Target] | None, tag: str, seed: int) -> list[Outcome]:
        def kill(victim: Target) -> dict[str, Any]:
            traffic = driver.traffic_to(victim)  # before the kill: what it carried until now
            detail = {"signal": self.signal, **driver.kill(victim, self.signal)}
            return detail if traffic is None else {**detail, "traffic": traffic}

        return each_victim(victims, "kill", kill)

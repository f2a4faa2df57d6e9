"""network-reset: a share of the connections reset (an RST instead of an answer)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from chaoslib_ext.faults.base import SpecContext, TrafficFault
from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.schema import DIRECTION, PERCENT
from chaoslib_ext.units import format_percent, parse_percent


@register
@dataclass(frozen=True, kw_only=True)
class NetworkReset(TrafficFault):
    kind = "network-reset"
    properties: ClassVar[dict[str, Any]] = {"probability": PERCENT, "direction": DIRECTION}

    probability: float = 1.0

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls(
            probability=parse_percent(spec.get("probability", "100%")),
            direction=spec.get("direction", "both"),
        )

    def describe(self, unit: str = "connections") -> str:
        return f"{format_percent(self.probability)} of connections reset"

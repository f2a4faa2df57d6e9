"""network-loss: a share of the traffic silently dropped (per connection on the proxy, per
packet in the kernel): callers wait for answers that never come."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from chaoslib_ext.faults.base import ONE_WAY, SpecContext, TrafficFault
from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.schema import DIRECTION, PERCENT
from chaoslib_ext.units import format_percent, parse_percent


@register
@dataclass(frozen=True, kw_only=True)
class NetworkLoss(TrafficFault):
    kind = "network-loss"
    required = ("probability",)
    properties: ClassVar[dict[str, Any]] = {"probability": PERCENT, "direction": DIRECTION}

    probability: float

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls(probability=parse_percent(spec["probability"]), direction=spec.get("direction", "both"))

    def describe(self, unit: str = "connections") -> str:
        return f"{format_percent(self.probability)} of {unit} silently dropped ({ONE_WAY[self.direction]})"

"""network-partition: the targets cut off, connections refused at once (refuse) or their
traffic silently swallowed (blackhole)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from chaoslib_ext.faults.base import ONE_WAY, SpecContext, TrafficFault
from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.schema import DIRECTION


@register
@dataclass(frozen=True, kw_only=True)
class NetworkPartition(TrafficFault):
    kind = "network-partition"
    properties: ClassVar[dict[str, Any]] = {
        "mode": {
            "enum": ["refuse", "blackhole"],
            "x-expected": "refuse (connections reset at once) or blackhole (silently dropped)",
        },
        "direction": DIRECTION,
    }

    mode: Literal["refuse", "blackhole"] = "refuse"

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls(mode=spec.get("mode", "refuse"), direction=spec.get("direction", "both"))

    def describe(self, unit: str = "connections") -> str:
        how = "connections refused" if self.mode == "refuse" else "traffic blackholed"
        return f"partition ({how}, {ONE_WAY[self.direction]})"

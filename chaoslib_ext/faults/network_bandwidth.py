"""network-bandwidth: the traffic limited to `rate`, shared by every connection to a target as
on a real link; on the responses by default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from chaoslib_ext.faults.base import ONE_WAY, SpecContext, TrafficFault
from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.schema import DIRECTION
from chaoslib_ext.units import format_rate, parse_rate

RATE = {
    "type": "string",
    "pattern": r"^\d+(\.\d+)?\s*(B|KB|MB|GB|KiB|MiB|GiB)/s$"
    r"|^\d+(\.\d+)?\s*(bps|kbps|mbps|gbps|kbit|mbit|gbit)$",
    "x-expected": "a rate such as 100KB/s, 2MiB/s or 8mbit",
}


@register
@dataclass(frozen=True, kw_only=True)
class NetworkBandwidth(TrafficFault):
    kind = "network-bandwidth"
    required = ("rate",)
    properties: ClassVar[dict[str, Any]] = {"rate": RATE, "direction": DIRECTION}

    rate: float  # bytes per second

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls(rate=parse_rate(spec["rate"]), direction=spec.get("direction", "downstream"))

    def describe(self, unit: str = "connections") -> str:
        return f"bandwidth limited to {format_rate(self.rate)} ({ONE_WAY[self.direction]})"

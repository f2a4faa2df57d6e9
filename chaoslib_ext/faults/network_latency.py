"""network-latency: the traffic held back by `delay` (± `jitter`), on the responses by default,
so that each request/response exchange is `delay` slower."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from chaoslib_ext.faults.base import SpecContext, TrafficFault
from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.schema import DIRECTION, DURATION
from chaoslib_ext.units import format_duration, parse_duration

WAYS = {"both": "on requests and on responses", "upstream": "on requests", "downstream": "on responses"}


@register
@dataclass(frozen=True, kw_only=True)
class NetworkLatency(TrafficFault):
    kind = "network-latency"
    required = ("delay",)
    properties: ClassVar[dict[str, Any]] = {
        "delay": DURATION,
        "jitter": DURATION,
        "distribution": {"enum": ["uniform", "normal"]},
        "direction": {
            **DIRECTION,
            "x-expected": "upstream (requests), downstream (responses, the default) or both (each way)",
        },
    }

    delay: float  # seconds
    jitter: float = 0.0  # seconds, either side of the delay
    distribution: Literal["uniform", "normal"] = "uniform"

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls(
            delay=parse_duration(spec["delay"]),
            jitter=parse_duration(spec.get("jitter", 0)),
            distribution=spec.get("distribution", "uniform"),
            direction=spec.get("direction", "downstream"),
        )

    def describe(self, unit: str = "connections") -> str:
        jitter = f" ±{format_duration(self.jitter)} ({self.distribution})" if self.jitter else ""
        exchange = self.delay * (2 if self.direction == "both" else 1)
        return (
            f"+{format_duration(self.delay)}{jitter} latency {WAYS[self.direction]} "
            f"(+{format_duration(exchange)} per request/response exchange)"
        )

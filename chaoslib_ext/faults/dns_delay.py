"""dns-delay: matching lookups answered `delay` late."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from chaoslib_ext.faults.base import LookupFault, SpecContext
from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.schema import DURATION
from chaoslib_ext.units import format_duration, parse_duration


@register
@dataclass(frozen=True, kw_only=True)
class DnsDelay(LookupFault):
    kind = "dns-delay"
    required = ("names", "delay")
    properties: ClassVar[dict[str, Any]] = {**LookupFault.properties, "delay": DURATION}

    delay: float  # seconds

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls(**cls.common(spec), delay=parse_duration(spec["delay"]))

    def describe(self, unit: str = "connections") -> str:
        return f"answers {format_duration(self.delay)} late for {self.names_text()}"

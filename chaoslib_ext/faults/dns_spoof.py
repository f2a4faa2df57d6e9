"""dns-spoof: matching lookups answered with `addresses` instead of the real ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from chaoslib_ext.faults.base import LookupFault, SpecContext
from chaoslib_ext.faults.registry import register

ADDRESSES = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "string",
        "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
        "pattern": "^[0-9a-fA-F:.]+$",
    },
}


@register
@dataclass(frozen=True, kw_only=True)
class DnsSpoof(LookupFault):
    kind = "dns-spoof"
    required = ("names", "addresses")
    properties: ClassVar[dict[str, Any]] = {**LookupFault.properties, "addresses": ADDRESSES}

    addresses: tuple[str, ...]

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls(**cls.common(spec), addresses=tuple(spec["addresses"]))

    def describe(self, unit: str = "connections") -> str:
        return f"answers {', '.join(self.addresses)} for {self.names_text()}"

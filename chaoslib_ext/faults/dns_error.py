"""dns-error: matching lookups answered with an error code, or not at all (TIMEOUT)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from chaoslib_ext.faults.base import LookupFault, SpecContext
from chaoslib_ext.faults.registry import register

Rcode = Literal["SERVFAIL", "NXDOMAIN", "REFUSED", "TIMEOUT"]


@register
@dataclass(frozen=True, kw_only=True)
class DnsError(LookupFault):
    kind = "dns-error"
    required = ("names",)
    properties: ClassVar[dict[str, Any]] = {
        **LookupFault.properties,
        "rcode": {
            "enum": ["SERVFAIL", "NXDOMAIN", "REFUSED", "TIMEOUT"],
            "x-expected": "SERVFAIL, NXDOMAIN, REFUSED or TIMEOUT (no answer)",
        },
    }

    rcode: Rcode = "SERVFAIL"

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        return cls(**cls.common(spec), rcode=spec.get("rcode", "SERVFAIL"))

    def describe(self, unit: str = "connections") -> str:
        answer = "no answer (timeout)" if self.rcode == "TIMEOUT" else self.rcode
        return f"{answer} for {self.names_text()}"

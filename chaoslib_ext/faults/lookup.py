"""What the dns-* kinds share: a rule on the names that match `names` (globs), for a share of
the lookups, held from the fault's apply to its revert by the DNS server the driver puts in the
way (the run's own, or one in each target's network namespace)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from chaoslib_ext.faults.base import Actions, FaultKind, Outcome, Target
from chaoslib_ext.faults.registry import PERCENT
from chaoslib_ext.units import format_percent, parse_percent

NAMES = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "minLength": 1},
    "description": "glob patterns such as *.payments.internal",
}


@dataclass(frozen=True, kw_only=True)
class LookupFault(FaultKind):
    scope = "names"
    lasting = True
    every_by_default = True
    properties: ClassVar[dict[str, Any]] = {"names": NAMES, "probability": PERCENT}

    patterns: tuple[str, ...]
    probability: float = 1.0  # the share of matching lookups it acts on

    @staticmethod
    def common(spec: Mapping[str, Any]) -> dict[str, Any]:
        """The fields every DNS fault parses the same way."""
        return {
            "patterns": tuple(spec["names"]),
            "probability": parse_percent(spec.get("probability", "100%")),
        }

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern.lower().rstrip(".")) for pattern in self.patterns)

    def names_text(self) -> str:
        chance = "" if self.probability >= 1 else f" for {format_percent(self.probability)} of queries"
        return ", ".join(self.patterns) + chance

    def apply(self, driver: Actions, victims: Sequence[Target] | None, tag: str, seed: int) -> list[Outcome]:
        return driver.add_dns_rule(victims, self, tag, seed)

    def revert(self, driver: Actions, tag: str) -> list[Outcome]:
        return driver.remove_dns_rule(tag)

"""What the network-* kinds share: they act on the traffic of their targets, in one direction
or both, from their apply to their revert; the driver decides how (a proxy, iptables and tc, a
Chaos Mesh object) and undoes exactly what this fault added."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from chaoslib_ext.faults.base import Actions, FaultKind, Outcome, Target

Direction = Literal["upstream", "downstream", "both"]
DIRECTION = {
    "enum": ["upstream", "downstream", "both"],
    "x-expected": "upstream (requests, to the service), downstream (responses, from it) or both",
}
ONE_WAY = {"both": "both directions", "upstream": "requests only", "downstream": "responses only"}


@dataclass(frozen=True, kw_only=True)
class TrafficFault(FaultKind):
    scope = "network"
    lasting = True
    every_by_default = True

    direction: Direction = "both"

    def applies(self, direction: str) -> bool:
        """Whether it acts on `direction` (upstream or downstream) of a connection."""
        return self.direction in ("both", direction)

    def apply(self, driver: Actions, victims: Sequence[Target] | None, tag: str, seed: int) -> list[Outcome]:
        return driver.impair(victims or [], self, tag, seed)

    def revert(self, driver: Actions, tag: str) -> list[Outcome]:
        return driver.restore(tag)

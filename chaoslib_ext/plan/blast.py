"""Blast radius: how many of a group's targets (a service's replicas, the containers a selector
matches) the plan's faults hold at the same moment, against `target.max_share`.

A lasting fault holds its targets from its apply to its revert. An instant one (a kill) holds its
victims for as long as its driver says they stay down (plan.make asks it: the local driver counts
the restart delay, or the rest of the fault phase for a replica that stays down; a container's
own restart policy decides, so the docker driver counts the instant only). Faults on the same
group add up, even if they might pick the same targets. Faults that name no targets (the local
driver's DNS faults act on names) have no radius.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaoslib_ext.errors import SpecError
from chaoslib_ext.plan.make import Plan
from chaoslib_ext.units import format_percent


@dataclass(frozen=True)
class Radius:
    group: str  # what the targets are, e.g. "replicas of backend"
    at_most: int  # targets held at once, at most
    of: int  # targets there are
    at: float  # when that happens (offset from the origin)
    faults: tuple[int, ...]  # the faults (1-based) that add up to it

    @property
    def share(self) -> float:
        return self.at_most / self.of if self.of else 0.0

    def describe(self) -> str:
        which = ", ".join(f"#{index}" for index in self.faults)
        return (
            f"{self.at_most} of {self.of} {self.group} ({format_percent(self.share)}) at once, "
            f"at +{self.at:g}s (fault {which})"
        )


def blast_radius(plan: Plan) -> list[Radius]:
    """The largest moment of each group of targets, in the order the groups first appear."""
    held: dict[tuple[str, ...], list[tuple[float, float, int, int]]] = {}  # (start, end, size, fault)
    names: dict[tuple[str, ...], str] = {}
    for fault in plan.faults:
        if not fault.candidates:
            continue
        names.setdefault(fault.candidates, fault.group)
        for start, end in fault.holds:
            held.setdefault(fault.candidates, []).append((start, end, fault.per_injection, fault.index + 1))
    radii = []
    for group, spans in held.items():
        best: Radius | None = None
        for moment, _, _, _ in spans:
            active = [span for span in spans if span[0] <= moment < span[1] or span[0] == moment]
            size = min(len(group), sum(span[2] for span in active))
            if best is None or size > best.at_most:
                faults = tuple(sorted({span[3] for span in active}))
                best = Radius(names[group], size, len(group), moment, faults)
        assert best is not None
        radii.append(best)
    return radii


def check_blast_radius(plan: Plan) -> list[Radius]:
    """The radii, or a SpecError at target.max_share if one is over it."""
    radii = blast_radius(plan)
    limit = plan.experiment.blast_limit
    if limit is None:
        return radii
    for radius in radii:
        if radius.share > limit.share + 1e-9:
            raise SpecError(
                f"the faults would hold {radius.describe()}, over target.max_share "
                f"{format_percent(limit.share)}",
                where=limit.where,
                hint="lower count or percent, space the faults apart, or raise max_share",
            )
    return radii

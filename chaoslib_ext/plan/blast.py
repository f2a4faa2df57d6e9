"""Blast radius: how many of a group's targets (a service's replicas, the containers a selector
matches) the plan's faults hold at the same moment, against `target.max_share`.

A lasting fault holds its targets from its apply to its revert. A pod-kill holds its victims
until the restart policy brings them back, counted as the restart delay; for `never`, or for
`on-failure` with a signal a replica may exit cleanly on, to the end of the fault phase (the time
a restarted replica takes to get ready cannot be known in advance). A container kill or restart
counts at its instant only, since how long the container stays down is up to its own restart
policy. Faults on the same group add up, even if they might pick the same targets. DNS faults
of the local driver act on names, not on replicas, and have no radius.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaoslib_ext.errors import SpecError
from chaoslib_ext.spec.model import ContainerFault, DnsFault, NetworkFault, PodKill
from chaoslib_ext.units import format_percent

if TYPE_CHECKING:
    from chaoslib_ext.plan.make import Plan  # plan.py renders the radius: a runtime import would be circular


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
    fault_phase_end = plan.phase("fault").end
    for fault in plan.faults:
        if not fault.candidates:
            continue
        group = fault.candidates
        names.setdefault(group, _group_name(fault.spec.params))
        applies = [a.at for a in plan.actions if a.fault_index == fault.index and a.kind == "apply"]
        reverts = [a.at for a in plan.actions if a.fault_index == fault.index and a.kind == "revert"]
        for start in applies:
            end = reverts[0] if reverts else start + _downtime(plan, fault.index, fault_phase_end - start)
            held.setdefault(group, []).append((start, end, fault.per_injection, fault.index + 1))
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


def _downtime(plan: Plan, index: int, rest_of_phase: float) -> float:
    """How long an instant fault's victims stay down, as far as the plan can know."""
    params = plan.faults[index].spec.params
    if not isinstance(params, PodKill):
        return 0.0
    restart = plan.experiment.services[params.service].restart
    # on-failure brings back only a replica that failed: one that exits cleanly on a catchable
    # signal stays down, as with never
    stays_down = restart.policy == "never" or (restart.policy == "on-failure" and params.signal != "SIGKILL")
    return rest_of_phase if stays_down else restart.delay


def _group_name(params: PodKill | NetworkFault | DnsFault | ContainerFault) -> str:
    selector = None if isinstance(params, PodKill) else params.selector
    if selector is not None:
        return f"containers matching {selector.describe()}"
    return f"replicas of {params.service}"  # type: ignore[union-attr]  # pod-kill, local network

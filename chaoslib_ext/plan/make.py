"""plan: resolve what each fault will hit and when, before anything runs. Changes nothing."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal

from chaoslib_ext.drivers import driver_for
from chaoslib_ext.drivers.base import Driver
from chaoslib_ext.faults.base import FaultSpec, choose
from chaoslib_ext.spec.model import PHASES, Experiment
from chaoslib_ext.units import format_duration

MAX_REPEATS = 10_000


@dataclass(frozen=True)
class PhaseWindow:
    """A phase as offsets in seconds from the moment every Locust user is spawned."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class Action:
    at: float  # offset from the origin
    fault_index: int
    fault: FaultSpec
    kind: Literal["apply", "revert"]


@dataclass(frozen=True)
class FaultPlan:
    index: int
    spec: FaultSpec
    seed: int  # the experiment's, or chosen for this run (and recorded in its report)
    candidates: tuple[str, ...]  # targets it may hit (none: it names none, as a local DNS fault)
    per_injection: int
    description: str
    group: str = ""  # its candidates as a group, for the blast radius
    holds: tuple[tuple[float, float], ...] = ()  # (from, to) for each injection: its victims are held
    warnings: tuple[str, ...] = ()  # what plan can tell in advance about a fault that may test nothing

    @property
    def seed_given(self) -> bool:
        return self.spec.seed is not None

    @property
    def first_victims(self) -> tuple[str, ...]:
        """Whom the first injection hits, if all candidates are up then: known in advance only
        when the experiment gives the seed."""
        if not self.candidates or self.per_injection >= len(self.candidates):
            return self.candidates
        return tuple(choose(random.Random(self.seed), self.candidates, self.per_injection, name=str))


@dataclass(frozen=True)
class Plan:
    experiment: Experiment
    phases: tuple[PhaseWindow, ...]
    faults: tuple[FaultPlan, ...]
    actions: tuple[Action, ...]  # applies and reverts, in time order

    @property
    def duration(self) -> float:
        return self.phases[-1].end

    def phase(self, name: str) -> PhaseWindow:
        return next(p for p in self.phases if p.name == name)


def make_plan(
    experiment: Experiment, driver: Driver | None = None, seed_source: random.Random | None = None
) -> Plan:
    """Lay the phases end to end and schedule every apply and revert inside the fault phase; the
    driver names each fault's candidates."""
    driver = driver or driver_for(experiment)
    source = seed_source or random.Random()
    lengths = experiment.phases
    phases, offset = [], 0.0
    for name, length in (("warmup", lengths.warmup), *((n, getattr(lengths, n)) for n in PHASES)):
        phases.append(PhaseWindow(name, offset, offset + length))
        offset += length
    window = next(p for p in phases if p.name == "fault")
    faults, actions = [], []
    for index, spec in enumerate(experiment.faults):
        seed = spec.seed if spec.seed is not None else source.randrange(2**31)
        start = window.start + spec.after
        holds: tuple[tuple[float, float], ...]  # when the fault is in force
        if spec.params.lasting:
            end = window.end if spec.duration is None else min(window.end, start + spec.duration)
            actions += [Action(start, index, spec, "apply"), Action(end, index, spec, "revert")]
            holds = ((start, end),)
        else:
            times = _repeats(start, window.end, spec.params.repeat_every)
            actions += [Action(t, index, spec, "apply") for t in times]
            holds = tuple((t, t + driver.downtime(spec, window.end - t)) for t in times)
        faults.append(_fault_plan(driver, index, spec, seed, holds))
    actions.sort(key=lambda action: (action.at, action.kind == "apply"))  # reverts first at a tie
    return Plan(experiment, tuple(phases), tuple(faults), tuple(actions))


def _repeats(start: float, end: float, interval: float | None) -> list[float]:
    times = [start]
    while interval and times[-1] + interval < end and len(times) < MAX_REPEATS:
        times.append(times[-1] + interval)
    return times


def _fault_plan(
    driver: Driver, index: int, spec: FaultSpec, seed: int, holds: tuple[tuple[float, float], ...]
) -> FaultPlan:
    params, selection = spec.params, spec.selection
    if selection is None:
        return FaultPlan(index, spec, seed, (), 0, f"{spec.kind}: {params.describe(driver.unit(spec))}")
    candidates = driver.candidates(spec)
    size = selection.size(len(candidates), params.every_by_default)
    where = driver.describe_targets(spec, size, len(candidates))
    text = f"{spec.kind}: {params.describe(driver.unit(spec))} {where}"
    if params.scope == "process" or size < len(candidates):
        text += f", chosen at random {seed_text(spec, seed)}"
    if params.repeat_every:
        text += f", every {format_duration(params.repeat_every)}"
    plan = FaultPlan(index, spec, seed, candidates, size, text, driver.group_name(spec), holds)
    return replace(plan, warnings=driver.warnings(index, spec, plan.first_victims))


def seed_text(spec: FaultSpec, seed: int) -> str:
    """A seed the experiment gives replays its choice; without one, each run draws its own."""
    return (
        f"with seed {seed}" if spec.seed is not None else "(seed drawn at run time, recorded in the report)"
    )

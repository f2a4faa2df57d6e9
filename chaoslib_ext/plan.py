"""plan: resolve what each fault will hit and when, before anything runs. Changes nothing."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .faults.pod_kill import kill_count
from .services import replica_port
from .spec.model import PHASES, Experiment, FaultSpec
from .units import format_clock, format_duration, format_percent


@dataclass(frozen=True)
class PhaseWindow:
    """A phase as offsets in seconds from the moment every Locust user is spawned."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class Injection:
    at: float  # offset from load start
    fault_index: int
    fault: FaultSpec


@dataclass(frozen=True)
class FaultPlan:
    index: int
    spec: FaultSpec
    seed: int
    candidates: tuple[str, ...]
    per_injection: int
    description: str


@dataclass(frozen=True)
class Plan:
    experiment: Experiment
    phases: tuple[PhaseWindow, ...]
    faults: tuple[FaultPlan, ...]
    injections: tuple[Injection, ...]

    @property
    def duration(self) -> float:
        return self.phases[-1].end

    def phase(self, name: str) -> PhaseWindow:
        return next(p for p in self.phases if p.name == name)


def make_plan(experiment: Experiment, seed_source: random.Random | None = None) -> Plan:
    """Lay the phases end to end and schedule every injection inside the fault phase."""
    source = seed_source or random.Random()
    lengths = experiment.phases
    phases, offset = [], 0.0
    for name, length in (("warmup", lengths.warmup), *((n, getattr(lengths, n)) for n in PHASES)):
        phases.append(PhaseWindow(name, offset, offset + length))
        offset += length
    fault_window = next(p for p in phases if p.name == "fault")
    faults, injections = [], []
    for index, spec in enumerate(experiment.faults):
        params = spec.params
        service = experiment.services[params.service]
        candidates = tuple(f"{service.name}-{i}" for i in range(service.replicas))
        seed = params.seed if params.seed is not None else source.randrange(2**31)
        per_injection = kill_count(params, len(candidates))
        at = fault_window.start + params.after
        times = []
        while at < fault_window.end and len(times) < 10_000:
            times.append(at)
            if params.interval is None or params.interval <= 0:
                break
            at += params.interval
        injections += [Injection(t, index, spec) for t in times]
        share = (
            f"{params.count}"
            if params.count is not None
            else (f"{params.percent:.0%}" if params.percent is not None else "1")
        )
        repeat = f", every {format_duration(params.interval)}" if params.interval else ""
        description = (
            f"{spec.kind}: {params.signal} {share} of {len(candidates)} live replica(s) of "
            f"{service.name} ({per_injection} now), chosen at random with seed {seed}{repeat}"
        )
        faults.append(FaultPlan(index, spec, seed, candidates, per_injection, description))
    injections.sort(key=lambda injection: injection.at)
    return Plan(experiment, tuple(phases), tuple(faults), tuple(injections))


def render_plan(plan: Plan) -> str:
    """The dry-run view printed by `gameday plan`."""
    experiment = plan.experiment
    lines = [f"Plan: {experiment.title}", f"  file: {experiment.path}", "", "Services (started by gameday):"]
    if not experiment.services:
        lines.append("  none: the system under test is already running")
    for service in experiment.services.values():
        ports = [replica_port(service, i) for i in range(service.replicas)]
        where = ", ".join(f"{service.name}-{i}" + (f" :{p}" if p else "") for i, p in enumerate(ports))
        lines.append(
            f"  {service.name}: {service.replicas} replica(s) [{where}], restart "
            f"{service.restart.policy} after {format_duration(service.restart.delay)}"
        )
    load = experiment.load
    lines += [
        "",
        f"Load: {load.locustfile.name} -> {load.host}, {load.users} users (spawn rate {load.spawn_rate:g}/s)",
        "",
        "Timeline (from the moment all users are spawned):",
    ]
    for phase in plan.phases:
        judged = "judged" if phase.name in experiment.slo.judge else "not judged"
        start, end = format_clock(phase.start, tenths=True), format_clock(phase.end, tenths=True)
        lines.append(f"  {start} - {end}  {phase.name:<9} ({judged})")
        for injection in plan.injections:
            if phase.start <= injection.at < phase.end:
                at = format_clock(injection.at, tenths=True)
                lines.append(f"    {at}  inject fault #{injection.fault_index + 1} {injection.fault.kind}")
    lines += ["", "Faults and their targets:"]
    if not plan.faults:
        lines.append("  none")
    for fault in plan.faults:
        lines.append(f"  #{fault.index + 1} {fault.description}")
        lines.append(f"     candidates: {', '.join(fault.candidates)}")
    lines += ["", "Objectives:"] + [f"  {text}" for text in objective_texts(experiment)]
    lines += ["", f"Total: {format_duration(plan.duration)} of load. Nothing was changed (dry run)."]
    return "\n".join(lines)


def objective_texts(experiment: Experiment) -> list[str]:
    slo = experiment.slo
    texts = []
    if slo.availability is not None:
        texts.append(f"availability >= {format_percent(slo.availability)}")
    texts += [f"{name} latency <= {format_duration(limit)}" for name, limit in slo.latency.items()]
    if slo.throughput_min is not None:
        texts.append(f"throughput >= {slo.throughput_min:g} req/s")
    if slo.recovery_within is not None:
        texts.append(
            f"recovered within {format_duration(slo.recovery_within)} after the fault ends "
            f"(SLO holding for {format_duration(slo.recovery_window)})"
        )
    return texts

"""plan: resolve what each fault will hit and when, before anything runs. Changes nothing."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from chaoslib_ext.drivers.local.services import replica_port
from chaoslib_ext.engine.guards import describe as describe_guard
from chaoslib_ext.faults.base import choose, selection_size
from chaoslib_ext.netfault.dns import DNS_ZONE
from chaoslib_ext.plan.blast import blast_radius
from chaoslib_ext.ports import port_holder, port_in_use
from chaoslib_ext.spec.model import (
    PHASES,
    ContainerFault,
    ContainerSelector,
    DnsFault,
    Experiment,
    FaultSpec,
    NetworkFault,
    PodKill,
    ServiceSpec,
)
from chaoslib_ext.units import format_clock, format_duration, format_percent, format_rate


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
    kind: str  # apply | revert


@dataclass(frozen=True)
class FaultPlan:
    index: int
    spec: FaultSpec
    seed: int  # the experiment's, or chosen for this run (and recorded in its report)
    candidates: tuple[str, ...]  # replicas it may hit (DNS faults: none)
    per_injection: int
    description: str
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


INSTANT = ("pod-kill", "container-kill", "container-restart")  # nothing to revert


def make_plan(
    experiment: Experiment,
    seed_source: random.Random | None = None,
    containers: Callable[[ContainerSelector, str], list[str]] | None = None,
) -> Plan:
    """Lay the phases end to end and schedule every apply and revert inside the fault phase.
    `containers` resolves a container fault's selector to the names it may hit (docker driver)."""
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
        if spec.kind in INSTANT:
            interval = spec.params.interval if isinstance(spec.params, PodKill) else None
            actions += [Action(t, index, spec, "apply") for t in _repeats(start, window.end, interval)]
        else:
            end = window.end if spec.duration is None else min(window.end, start + spec.duration)
            actions += [Action(start, index, spec, "apply"), Action(end, index, spec, "revert")]
        faults.append(_fault_plan(experiment, index, spec, seed, containers))
    actions.sort(key=lambda action: (action.at, action.kind == "apply"))  # reverts first at a tie
    return Plan(experiment, tuple(phases), tuple(faults), tuple(actions))


def _repeats(start: float, end: float, interval: float | None) -> list[float]:
    times = [start]
    while interval and times[-1] + interval < end and len(times) < 10_000:
        times.append(times[-1] + interval)
    return times


def _fault_plan(
    experiment: Experiment,
    index: int,
    spec: FaultSpec,
    seed: int,
    containers: Callable[[ContainerSelector, str], list[str]] | None,
) -> FaultPlan:
    params = spec.params
    if isinstance(params, DnsFault) and params.selector is not None:
        names, size = _selected(containers, params.selector, spec, params.count, params.percent, every=True)
        text = (
            f"{describe_dns(spec.kind, params)} for the UDP lookups of {size} of {len(names)} running "
            f"container(s) matching {params.selector.describe()} (a redirect in their network namespaces "
            "to gameday's DNS server there, which forwards the rest to their own resolver)"
        )
        return FaultPlan(index, spec, seed, names, size, f"{spec.kind}: {text}")
    if isinstance(params, DnsFault):
        return FaultPlan(index, spec, seed, (), 0, f"{spec.kind}: {describe_dns(spec.kind, params)}")
    if isinstance(params, ContainerFault):
        names, size = _selected(containers, params.selector, spec, params.count, params.percent, every=False)
        what = {
            "container-kill": f"{params.signal} to",
            "container-stop": "stop, then start again",
            "container-pause": "pause, then unpause",
            "container-restart": "restart",
        }[spec.kind]
        text = (
            f"{what} {size} of {len(names)} running container(s) matching {params.selector.describe()}, "
            f"chosen at random {seed_text(spec, seed)}"
        )
        return FaultPlan(index, spec, seed, names, size, f"{spec.kind}: {text}")
    if isinstance(params, NetworkFault) and params.selector is not None:
        names, size = _selected(containers, params.selector, spec, params.count, params.percent, every=True)
        text = (
            f"{describe_network(spec.kind, params)} on all TCP traffic of {size} of {len(names)} running "
            f"container(s) matching {params.selector.describe()}, in their network namespaces "
            f"(nsenter; iptables/tc, kernel path)"
        )
        return FaultPlan(index, spec, seed, names, size, f"{spec.kind}: {text}")
    service = experiment.services[params.service]
    candidates = tuple(f"{service.name}-{i}" for i in range(service.replicas))
    warnings: tuple[str, ...] = ()
    if isinstance(params, PodKill):
        per_injection = selection_size(params.count, params.percent, len(candidates), default=1)
        warnings = _reach_warnings(experiment, index, spec, service.name, candidates, per_injection, seed)
        if params.count is not None:
            share = str(params.count)
        else:
            share = "1" if params.percent is None else format_percent(params.percent)
        repeat = f", every {format_duration(params.interval)}" if params.interval else ""
        text = (
            f"{params.signal} {share} of {len(candidates)} live replica(s) of {service.name} "
            f"({per_injection} now), chosen at random {seed_text(spec, seed)}{repeat}"
        )
    else:
        per_injection = selection_size(params.count, params.percent, len(candidates), default=len(candidates))
        way = (
            "in each one's network namespace (iptables/tc, kernel path)"
            if params.path == "kernel"
            else "through gameday's userspace proxy"
        )
        if params.path == "userspace" and service.isolation == "netns" and spec.kind == "network-latency":
            way += " (this kernel has no sch_netem for the kernel path)"
        text = (
            f"{describe_network(spec.kind, params)} on the traffic to {per_injection} of "
            f"{len(candidates)} replica(s) of {service.name}, {way}"
            + (f" (chosen at random {seed_text(spec, seed)})" if per_injection < len(candidates) else "")
        )
    return FaultPlan(index, spec, seed, candidates, per_injection, f"{spec.kind}: {text}", warnings)


def unreached(experiment: Experiment, service: str) -> tuple[str, ...]:
    """The replicas of a service that nothing in the experiment sends traffic to: not the load's
    host, and no other service is given their addresses ({endpoints:}, {proxied:}, {hostnames:})."""
    if experiment.load.front and experiment.load.front[1] == service:
        return ()  # the load itself spreads over its replicas
    references = [f"{{{field}:{service}}}" for field in ("endpoints", "proxied", "hostnames")]
    for other in experiment.services.values():
        texts = (*other.command, *other.env.values(), other.ready.url or "")
        if other.name != service and any(ref in text for text in texts for ref in references):
            return ()
    spec = experiment.services[service]
    load_port = urlsplit(experiment.load.host).port
    return tuple(f"{service}-{i}" for i in range(spec.replicas) if replica_port(spec, i) != load_port)


def _reach_warnings(
    experiment: Experiment,
    index: int,
    spec: FaultSpec,
    service: str,
    candidates: tuple[str, ...],
    per_injection: int,
    seed: int,
) -> tuple[str, ...]:
    lost = unreached(experiment, service)
    if not lost:
        return ()
    first = tuple(choose(random.Random(seed), candidates, per_injection, name=str))
    hits = first if spec.seed is not None else tuple(c for c in candidates if c in lost)
    hits = tuple(h for h in hits if h in lost)
    if not hits:
        return ()
    why = (
        f"the load goes to {urlsplit(experiment.load.host).netloc} and no service is given "
        f"{service}'s address"
    )
    verb = "hits" if spec.seed is not None else "may hit"
    return (
        f"fault #{index + 1} {spec.kind} {verb} {', '.join(hits)}, which nothing in this experiment "
        f"sends traffic to ({why}): unless something outside does, it tests nothing",
    )


def ready_text(service: ServiceSpec) -> str:
    """How gameday will know a replica is up, with the defaults it takes."""
    ready, within = service.ready, format_duration(service.ready.timeout)
    if ready.url:
        return f"{ready.url} answers 2xx (within {within})"
    if ready.command:
        return f"{' '.join(ready.command)} exits 0 (within {within})"
    if ready.tcp or service.port:
        port = f"port {ready.tcp}" if ready.tcp else "its port"
        return f"{port} accepts connections (within {within})"
    return "it has run for half a second (no port to check)"


def seed_text(spec: FaultSpec, seed: int) -> str:
    """A seed the experiment gives replays its choice; without one, each run draws its own."""
    return (
        f"with seed {seed}" if spec.seed is not None else "(seed drawn at run time, recorded in the report)"
    )


def _selected(
    containers: Callable[[ContainerSelector, str], list[str]] | None,
    selector: ContainerSelector,
    spec: FaultSpec,
    count: int | None,
    percent: float | None,
    every: bool,
) -> tuple[tuple[str, ...], int]:
    """The running containers a selector matches, and how many one injection hits (without count
    or percent: all of them if `every`, else one)."""
    names = tuple(containers(selector, str(spec.where))) if containers else ()
    return names, selection_size(count, percent, len(names), default=len(names) if every else 1)


def describe_network(kind: str, fault: NetworkFault) -> str:
    direction = {"both": "both directions", "upstream": "requests only", "downstream": "responses only"}
    where = direction[fault.direction]
    if kind == "network-latency":
        jitter = f" ±{format_duration(fault.jitter)} ({fault.distribution})" if fault.jitter else ""
        ways = {
            "both": "on requests and on responses",
            "upstream": "on requests",
            "downstream": "on responses",
        }
        exchange = fault.delay * (2 if fault.direction == "both" else 1)
        return (
            f"+{format_duration(fault.delay)}{jitter} latency {ways[fault.direction]} "
            f"(+{format_duration(exchange)} per request/response exchange)"
        )
    if kind == "network-loss":
        unit = "packets" if fault.path == "kernel" else "connections"
        return f"{format_percent(fault.probability)} of {unit} silently dropped ({where})"
    if kind == "network-reset":
        return f"{format_percent(fault.probability)} of connections reset"
    if kind == "network-bandwidth":
        return f"bandwidth limited to {format_rate(fault.rate)} ({where})"
    return f"partition ({'connections refused' if fault.mode == 'refuse' else 'traffic blackholed'}, {where})"


def describe_dns(kind: str, fault: DnsFault) -> str:
    names = ", ".join(fault.patterns)
    chance = "" if fault.probability >= 1 else f" for {format_percent(fault.probability)} of queries"
    if kind == "dns-error":
        answer = "no answer (timeout)" if fault.rcode == "TIMEOUT" else fault.rcode
        return f"{answer} for {names}{chance}"
    if kind == "dns-delay":
        return f"answers {format_duration(fault.delay)} late for {names}{chance}"
    return f"answers {', '.join(fault.addresses)} for {names}{chance}"


def render_plan(plan: Plan) -> str:
    """The dry-run view printed by `gameday plan`."""
    experiment = plan.experiment
    lines = [f"Plan: {experiment.title}", f"  file: {experiment.path}", "", "Services (started by gameday):"]
    if not experiment.services:
        lines.append("  none: the system under test is already running")
    taken = []
    for service in experiment.services.values():
        ports = [replica_port(service, i) for i in range(service.replicas)]
        where = ", ".join(f"{service.name}-{i}" + (f" :{p}" if p else "") for i, p in enumerate(ports))
        lines.append(
            f"  {service.name}: {service.replicas} replica(s) [{where}], restart "
            f"{service.restart.policy} after {format_duration(service.restart.delay)}"
            + (", each replica in a network namespace of its own" if service.isolation == "netns" else "")
            + (", its resolver is the run's DNS server" if service.resolver == "gameday" else "")
        )
        lines.append(f"     ready when {ready_text(service)}; runs in {service.cwd}")
        taken += [
            f"port {port} ({service.name}-{i}) is in use now by {port_holder(port)}"
            for i, port in enumerate(ports)
            if port and service.isolation != "netns" and port_in_use(port)
        ]
    if experiment.proxied or experiment.dns:
        lines += ["", "Fault injection points (started with the run, stopped with it):"]
        for name in experiment.proxied:
            count = experiment.services[name].replicas
            lines.append(
                f"  userspace TCP proxy in front of each of the {count} replica(s) of {name} "
                f"(callers use {{proxied:{name}}}); no toxic until a fault starts"
            )
        if experiment.dns:
            lines.append(
                f"  DNS server for *.{DNS_ZONE} (services given {{dns}}); other names go to the "
                "system resolver"
            )
    load = experiment.load
    lines += [
        "",
        f"Load: {load.locustfile.name} -> {load.host}, {load.users_text} (spawn rate {load.spawn_rate:g}/s), "
        f"request timeout {format_duration(load.request_timeout)}",
    ]
    if load.front:
        field, name = load.front
        through = "their fault proxies" if field == "proxied" else "them directly"
        lines.append(
            f"  gameday's front for {name}: each new connection goes to the next of its "
            f"{experiment.services[name].replicas} replica(s), through {through}"
        )
    lines += ["", "Timeline (from the moment all users are spawned):"]
    for phase in plan.phases:
        judged = "judged" if phase.name in experiment.slo.judge else "not judged"
        start, end = format_clock(phase.start, tenths=True), format_clock(phase.end, tenths=True)
        lines.append(f"  {start} - {end}  {phase.name:<9} ({judged})")
        for action in plan.actions:
            if phase.start <= action.at < phase.end or (action.kind == "revert" and action.at == phase.start):
                at = format_clock(action.at, tenths=True)
                verb = "inject" if action.kind == "apply" else "revert"
                lines.append(f"    {at}  {verb} fault #{action.fault_index + 1} {action.fault.kind}")
    lines += ["", "Faults and their targets:"]
    if not plan.faults:
        lines.append("  none")
    for fault in plan.faults:
        lines.append(f"  #{fault.index + 1} {fault.description}")
        if fault.candidates:
            lines.append(f"     candidates: {', '.join(fault.candidates)}")
        if fault.seed_given and fault.first_victims != fault.candidates:
            lines.append(f"     first injection hits: {', '.join(fault.first_victims)} (seed {fault.seed})")
    lines += ["", "Objectives:"] + [f"  {text}" for text in objective_texts(experiment)]
    limit = experiment.blast_limit
    lines += ["", "Blast radius (targets held at once, at most):"]
    lines += [f"  {radius.describe()}" for radius in blast_radius(plan)] or [
        "  nothing: no fault holds a replica"
    ]
    if limit is not None:
        lines.append(f"  limit: target.max_share {format_percent(limit.share)}")
    else:
        every = any(radius.at_most == radius.of for radius in blast_radius(plan))
        lines.append(
            "  limit: none (target.max_share is not set)"
            + (": a fault may hold every replica of a service at once" if every else "")
        )
    warnings = [warning for fault in plan.faults for warning in fault.warnings] + taken
    if warnings:
        lines += ["", "Warnings:"] + [f"  ! {warning}" for warning in warnings]
    lines += ["", "Guards (abort and revert at once):"]
    lines += [f"  {describe_guard(guard)}" for guard in experiment.guards] or ["  none"]
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

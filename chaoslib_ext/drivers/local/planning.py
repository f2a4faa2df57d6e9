"""What the local driver tells `gameday plan` and checks on the host before a run: the services
it will start, the ports already taken, the replicas no traffic reaches, what this host lacks."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

from chaoslib_ext.drivers.local.selection import ServiceSelector
from chaoslib_ext.drivers.local.services import replica_port
from chaoslib_ext.errors import SpecError
from chaoslib_ext.faults.base import FaultSpec
from chaoslib_ext.netfault.dns import DNS_ZONE
from chaoslib_ext.netfault.kernel import is_root, netem_available
from chaoslib_ext.ports import port_holder, port_in_use
from chaoslib_ext.spec.model import Experiment, ServiceSpec
from chaoslib_ext.units import format_duration

ROOT_TOOLS_HINT = "install them (Debian: apt-get install util-linux iproute2 iptables conntrack)"


def route_of(experiment: Experiment, selector: ServiceSelector, kind: str) -> str:
    """kernel (iptables/tc in the replicas' namespaces) or userspace (the fault proxy): auto takes
    the kernel path for a service isolated in namespaces, unless this kernel cannot shape latency."""
    if selector.route != "auto":
        return selector.route
    service = experiment.services[selector.service]
    kernel_ok = service.isolation == "netns" and (kind != "network-latency" or netem_available())
    return "kernel" if kernel_ok else "userspace"


def host_problems(experiment: Experiment) -> list[SpecError]:
    """What this host lacks for the experiment: root, programs, a kernel that can shape latency."""
    problems = []
    for name, service in experiment.services.items():
        if service.resolver == "gameday":
            problems += _need_root(
                service,
                f"services.{name}.resolver: resolver: gameday runs the service in a mount namespace "
                "of its own (root)",
                ("unshare", "mount"),
            )
        if service.isolation == "netns" and not is_root():
            problems.append(
                SpecError(
                    f"services.{name}.isolation: isolation: netns needs root",
                    where=service.where,
                    hint="run as root, or drop isolation to use the userspace fault path",
                )
            )
        program = service.command[0]
        if "{" not in program and "/" not in program and shutil.which(program) is None:
            problems.append(
                SpecError(
                    f"services.{name}.command[0]: program not found: {program}",
                    where=service.where,
                    hint="give a path or a program on PATH; {python} is the interpreter running gameday",
                )
            )
    for index, fault in enumerate(experiment.faults):
        if fault.params.scope == "network":
            problems += _route_problems(experiment, index, fault)
    return problems


def _route_problems(experiment: Experiment, index: int, fault: FaultSpec) -> list[SpecError]:
    selector = selector_of(fault)
    service = experiment.services[selector.service]
    if service.isolation != "netns" or fault.params.kind != "network-latency" or netem_available():
        return []
    field = f"faults[{index}].{fault.kind}"
    if selector.route == "kernel":
        return [
            SpecError(
                f"{field}.path: the kernel path cannot be used: this kernel has no sch_netem for latency",
                where=fault.where,
                hint=f"use path: userspace and reach {service.name} through {{proxied:{service.name}}}",
            )
        ]
    if selector.route == "auto" and service.name not in experiment.proxied:
        return [
            SpecError(
                f"{field}.to: nothing reaches {service.name!r} through gameday's fault proxies",
                where=fault.where,
                hint=f"write {{proxied:{service.name}}} where callers are given its address (this kernel has "
                "no sch_netem, so latency needs the userspace proxy)",
            )
        ]
    return []


def _need_root(service: ServiceSpec, message: str, programs: tuple[str, ...]) -> list[SpecError]:
    problems = [] if is_root() else [SpecError(message, where=service.where, hint="run gameday as root")]
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        problems.append(
            SpecError(
                f"{message}; not found: {', '.join(missing)}", where=service.where, hint=ROOT_TOOLS_HINT
            )
        )
    return problems


def setup_lines(experiment: Experiment) -> list[str]:
    """The services gameday starts and the fault injection points in front of them."""
    lines = ["Services (started by gameday):"]
    if not experiment.services:
        lines.append("  none: the system under test is already running")
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
    return lines


def ports_taken(experiment: Experiment) -> list[str]:
    """The services' ports that something else holds now: the run would fail to start them."""
    taken = []
    for service in experiment.services.values():
        for i in range(service.replicas):
            port = replica_port(service, i)
            if port and service.isolation != "netns" and port_in_use(port):
                taken.append(f"port {port} ({service.name}-{i}) is in use now by {port_holder(port)}")
    return taken


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


def reach_warnings(
    experiment: Experiment,
    index: int,
    fault: FaultSpec,
    candidates: tuple[str, ...],
    victims: tuple[str, ...],
) -> tuple[str, ...]:
    """A kill that may hit a replica nothing sends traffic to tests nothing: say so in advance."""
    service = selector_of(fault).service
    lost = unreached(experiment, service)
    hits = tuple(h for h in (victims if fault.seed is not None else candidates) if h in lost)
    if not hits:
        return ()
    why = (
        f"the load goes to {urlsplit(experiment.load.host).netloc} and no service is given "
        f"{service}'s address"
    )
    verb = "hits" if fault.seed is not None else "may hit"
    return (
        f"fault #{index + 1} {fault.kind} {verb} {', '.join(hits)}, which nothing in this experiment "
        f"sends traffic to ({why}): unless something outside does, it tests nothing",
    )


def selector_of(fault: FaultSpec) -> ServiceSelector:
    assert fault.selection is not None and isinstance(fault.selection.selector, ServiceSelector)
    return fault.selection.selector

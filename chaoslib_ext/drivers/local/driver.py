"""The local driver: gameday's own services (optionally each replica in a network namespace of
its own), and the fault proxies and DNS server that stand in front of them."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslib_ext.drivers.base import BuildContext, Driver, RunContext
from chaoslib_ext.drivers.local import planning
from chaoslib_ext.drivers.local.selection import (
    SELECTION_PROPERTIES,
    ServiceSelector,
    parse_service_selection,
)
from chaoslib_ext.drivers.local.services import LOOPBACK, Replica, ServiceSupervisor, endpoints, replica_port
from chaoslib_ext.errors import RunAborted, SpecError
from chaoslib_ext.events import Timeline
from chaoslib_ext.faults.base import (
    FaultSpec,
    LookupFault,
    Outcome,
    PartialFailure,
    Scope,
    Selection,
    Signal,
    Target,
    TrafficFault,
)
from chaoslib_ext.netfault.dns import DNS_ZONE, FaultDnsServer, RunNames, loopback_socket
from chaoslib_ext.netfault.kernel import (
    KernelChanges,
    KernelTarget,
    Namespace,
    NamespaceFactory,
)
from chaoslib_ext.netfault.proxy import FaultHub, FaultProxy
from chaoslib_ext.spec.model import FRONT, Experiment
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.trust import RunDirectory
from chaoslib_ext.state.undo import tool


@dataclass(frozen=True)
class Slot:
    """A replica as a network fault's target: whichever process runs as it, its traffic."""

    name: str
    selector: ServiceSelector
    index: int


@dataclass
class Impaired:
    """What one network fault holds: the toxic on some proxies, or rules in some namespaces."""

    proxies: list[FaultProxy] = field(default_factory=list)
    connections_before: dict[str, int] = field(default_factory=dict)
    open_at_start: dict[str, int] = field(default_factory=dict)
    kernel: KernelChanges | None = None
    namespaces: list[KernelTarget] = field(default_factory=list)


class LocalDriver(Driver):
    name = "local"
    kinds = frozenset(
        {
            "pod-kill",
            "network-latency",
            "network-loss",
            "network-reset",
            "network-bandwidth",
            "network-partition",
            "dns-error",
            "dns-delay",
            "dns-spoof",
        }
    )
    undo_kinds = frozenset({"process-group", "netns", "link", "iptables", "qdisc"})
    selection_properties = SELECTION_PROPERTIES
    parse_selection = staticmethod(parse_service_selection)
    offline = True

    def __init__(self, experiment: Experiment) -> None:
        super().__init__(experiment)
        self.ledger: Ledger | None = None
        self.hub: FaultHub | None = None
        self.front: FaultProxy | None = None  # where the load goes, for `load.host: http://{proxied:web}`
        self.proxies: dict[str, list[FaultProxy]] = {}
        self.namespaces: dict[str, list[Namespace]] = {}
        self.dns: FaultDnsServer | None = None
        self.factory: NamespaceFactory | None = None
        self.supervisor: ServiceSupervisor | None = None
        self.impaired: dict[str, Impaired] = {}
        self.timeline: Timeline | None = None

    # --- the file ---

    @classmethod
    def check_experiment(cls, experiment: Experiment, context: BuildContext) -> None:
        allow = experiment.allow
        for index, fault in enumerate(experiment.faults):
            service = _service(fault)
            if allow is not None and allow.services and service and service not in allow.services:
                context.error(
                    ("faults", index),
                    f"{fault.kind} on service {service!r}, which is outside target.allow.services",
                    "allowed: " + ", ".join(allow.services),
                )
        if any(fault.params.scope == "names" for fault in experiment.faults) and not experiment.dns:
            context.error(
                ("faults",),
                "DNS faults are declared but no service resolves names through gameday",
                "pass {dns} to the service that should use gameday's DNS server",
            )

    # --- plan ---

    def preflight(self) -> list[SpecError]:
        return planning.host_problems(self.experiment)

    def lock_key(self) -> str:
        """The load's host (by address, so that localhost and 127.0.0.1 are one target) and port;
        for gameday's front, the first port of the service behind it."""
        from chaoslib_ext.state.locks import address_key

        experiment = self.experiment
        if experiment.load.front:
            service = experiment.services[experiment.load.front[1]]
            return f"local 127.0.0.1:{service.port}"
        return f"local {address_key(experiment.load.host)}"

    def candidates(self, fault: FaultSpec) -> tuple[str, ...]:
        service = _service(fault)
        if not service:
            return ()
        return tuple(f"{service}-{i}" for i in range(self.experiment.services[service].replicas))

    def describe_targets(self, fault: FaultSpec, size: int, total: int) -> str:
        service = _service(fault)
        if not service:
            return ""
        if fault.params.scope == "process":
            assert fault.selection is not None
            return f"{fault.selection.share_text()} of {total} live replica(s) of {service} ({size} now)"
        if self._route(fault) == "kernel":
            way = "in each one's network namespace (iptables/tc, kernel path)"
        else:
            way = "through gameday's userspace proxy"
            isolated = self.experiment.services[service].isolation == "netns"
            if isolated and fault.params.kind == "network-latency":
                way += " (this kernel has no sch_netem for the kernel path)"
        return f"on the traffic to {size} of {total} replica(s) of {service}, {way}"

    def unit(self, fault: FaultSpec) -> str:
        if fault.params.scope != "network":
            return "connections"
        return "packets" if self._route(fault) == "kernel" else "connections"

    def _route(self, fault: FaultSpec) -> str:
        return planning.route_of(self.experiment, planning.selector_of(fault), fault.params.kind)

    def downtime(self, fault: FaultSpec, rest_of_phase: float) -> float:
        """A killed replica is back after its restart delay; `never`, or `on-failure` after a signal
        it may exit cleanly on, keeps it down for the rest of the fault phase."""
        restart = self.experiment.services[_service(fault)].restart
        signal = getattr(fault.params, "signal", "SIGKILL")
        stays_down = restart.policy == "never" or (restart.policy == "on-failure" and signal != "SIGKILL")
        return rest_of_phase if stays_down else restart.delay

    def warnings(self, index: int, fault: FaultSpec, victims: tuple[str, ...]) -> tuple[str, ...]:
        if fault.params.scope != "process":
            return ()
        return planning.reach_warnings(self.experiment, index, fault, self.candidates(fault), victims)

    def setup_lines(self) -> list[str]:
        return planning.setup_lines(self.experiment)

    def host_warnings(self) -> list[str]:
        return planning.ports_taken(self.experiment)

    # --- a run ---

    def start(self, run: RunContext) -> None:
        """Namespaces, proxies, the front and the DNS server, then the services; if this fails
        part-way, `stop` takes down what was set up."""
        experiment, services = self.experiment, self.experiment.services
        self.ledger, self.timeline = run.ledger, run.timeline
        timeline = run.timeline
        if experiment.proxied or experiment.dns or experiment.load.front:
            self.hub = FaultHub()
        isolated = [name for name, s in services.items() if s.isolation == "netns"]
        if isolated:
            tag = hashlib.sha1(run.ledger.run_id.encode()).hexdigest()[:4]
            self.factory = NamespaceFactory(tag, run.ledger)
            for name in isolated:
                self.namespaces[name] = [self.factory.create(name, i) for i in range(services[name].replicas)]
                for namespace in self.namespaces[name]:
                    timeline.add("network", "namespace", namespace.name, address=namespace.address)
        hosts = {
            name: [ns.address for ns in self.namespaces[name]]
            if name in self.namespaces
            else [LOOPBACK] * s.replicas
            for name, s in services.items()
        }
        shared = endpoints(services, hosts)
        for name in experiment.proxied:
            assert self.hub is not None
            service = services[name]
            self.proxies[name] = [
                self.hub.proxy(f"{name}-{i}", (hosts[name][i], replica_port(service, i) or 0))
                for i in range(service.replicas)
            ]
            shared[f"proxied:{name}"] = ",".join(proxy.address for proxy in self.proxies[name])
        records: dict[str, list[str]] = {}
        for name, service in services.items():
            if service.port is None:
                continue
            names = [f"{name}-{i}.{DNS_ZONE}" for i in range(service.replicas)]
            records.update({host: [hosts[name][i]] for i, host in enumerate(names)})
            records[f"{name}.{DNS_ZONE}"] = sorted(set(hosts[name]))
            shared[f"hostnames:{name}"] = ",".join(
                f"{host}:{replica_port(service, i)}" for i, host in enumerate(names)
            )
        if experiment.load.front:
            assert self.hub is not None
            field_name, name = experiment.load.front
            upstreams = [
                (host, int(port))
                for host, _, port in (a.rpartition(":") for a in shared[f"{field_name}:{name}"].split(","))
            ]
            self.front = self.hub.proxy(f"front-{name}", upstreams[0], 0, *upstreams[1:])
            timeline.add("network", "front", name, address=self.front.address, upstreams=len(upstreams))
        if experiment.dns:
            assert self.hub is not None
            self.dns = FaultDnsServer(self.hub, loopback_socket(), RunNames(records))
            shared["dns"] = self.dns.address
        placement = {
            name: [(ns.address, ns.exec_prefix()) for ns in namespaces]
            for name, namespaces in self.namespaces.items()
        }
        resolving = [name for name, s in services.items() if s.resolver == "gameday"]
        if resolving:
            assert self.dns is not None, "spec runs the DNS server for a service that resolves through it"
            prefix = system_resolver_prefix(self.dns, run.run_dir)
            timeline.add("network", "resolver", ", ".join(resolving), address=f"{self.dns_address}:53")
            placement.update({name: [(LOOPBACK, prefix)] * services[name].replicas for name in resolving})
        self.supervisor = ServiceSupervisor(services, run.run_dir, timeline, shared, placement, run.ledger)
        self.supervisor.start()

    def stop(self) -> None:
        try:
            if self.supervisor is not None:
                self.supervisor.stop()
        finally:
            self.stop_network()

    def load_host(self, host: str) -> str:
        """`http://{proxied:web}` becomes the front's address."""
        if self.front is None:
            return host
        return FRONT.sub(rf"\g<1>{self.front.address}\g<4>", host)

    @property
    def dns_address(self) -> str:
        return self.dns.system_address if self.dns is not None and self.dns.system_address else ""

    def capped(self) -> int:
        """Connections the proxies refused because the run's descriptors would have run out."""
        return sum(proxy.stats.capped for proxies in self.proxies.values() for proxy in proxies)

    def stop_network(self) -> None:
        """Stop the proxies and DNS server, delete the namespaces; raise if something stays behind."""
        try:
            if self.hub is not None:
                capped = self.capped()
                if capped and self.timeline is not None:
                    self.timeline.add("network", "capped", "proxies", refused=capped, limit=self.hub.capacity)
                self.hub.stop()
                self.hub = None
        finally:
            problems = self.factory.remove_all() if self.factory is not None else []
            self.factory = None
        for problem in problems:
            if self.timeline is not None:
                self.timeline.add("network", "cleanup-failed", detail=problem)
        if problems:
            raise RunAborted(
                f"could not remove what the run set up: {problems[0]}", hint="run `gameday recover` as root"
            )

    # --- what faults ask ---

    def targets(self, selection: Selection, scope: Scope, where: str) -> Sequence[Target]:
        """A service's live replicas (to kill), or each replica's way in: its fault proxy, or its
        namespace on the kernel path."""
        assert isinstance(selection.selector, ServiceSelector) and self.supervisor is not None
        service = selection.selector.service
        if scope == "process":
            live = self.supervisor.live(service)
            if not live:
                raise RunAborted(
                    f"no live replica of {service!r} to kill",
                    where=where,
                    hint="the restart delay may be longer than the kill interval",
                )
            return live
        replicas = self.experiment.services[service].replicas
        return [Slot(f"{service}-{i}", selection.selector, i) for i in range(replicas)]

    def traffic_to(self, target: Target) -> int | None:
        """Connections through the replica's fault proxy so far; None if callers reach it directly."""
        assert isinstance(target, Replica)
        proxies = self.proxies.get(target.service.name)
        if proxies is None:
            return None
        proxy = proxies[target.index]
        return proxy.connections_seen() + proxy.connections_open()

    def kill(self, target: Target, signal: Signal) -> dict[str, Any]:
        assert isinstance(target, Replica) and self.supervisor is not None
        return {"pid": self.supervisor.kill(target, signal)}

    def impair(
        self, targets: Sequence[Target], impairment: TrafficFault, tag: str, seed: int
    ) -> list[Outcome]:
        held = self.impaired.setdefault(tag, Impaired())
        slots = [target for target in targets if isinstance(target, Slot)]
        if not slots:
            return []
        selector = slots[0].selector
        service = self.experiment.services[selector.service]
        if planning.route_of(self.experiment, selector, impairment.kind) == "kernel":
            namespaces = self.namespaces[service.name]
            kernel = [
                KernelTarget(s.name, namespaces[s.index], replica_port(service, s.index) or 0) for s in slots
            ]
            return self._impair_kernel(kernel, impairment, tag, held)
        return self._impair_proxies(slots, service.name, impairment, tag, held, seed)

    def _impair_proxies(
        self, slots: list[Slot], service: str, impairment: TrafficFault, tag: str, held: Impaired, seed: int
    ) -> list[Outcome]:
        rng = random.Random(seed)
        proxies = [self.proxies[service][slot.index] for slot in slots]
        for proxy in proxies:
            held.connections_before[proxy.name] = proxy.connections_seen()
            held.open_at_start[proxy.name] = proxy.connections_open()
        for proxy in proxies:
            held.proxies.append(proxy)
            proxy.add(tag, impairment, seed=rng.randrange(2**31))
        return [
            Outcome(
                "inject",
                proxy.name,
                {
                    "path": "userspace",
                    "proxy": proxy.address,
                    "upstream": f"{proxy.upstream[0]}:{proxy.upstream[1]}",
                },
            )
            for proxy in proxies
        ]

    def _impair_kernel(
        self, targets: list[KernelTarget], impairment: TrafficFault, tag: str, held: Impaired
    ) -> list[Outcome]:
        """iptables rules and qdiscs in each replica's namespace, each in the ledger first."""
        assert self.ledger is not None
        held.kernel = held.kernel or KernelChanges(self.ledger)
        done: list[Outcome] = []
        for target in targets:
            try:
                rules = held.kernel.add(target.namespace, impairment, target.port, tag)
            except RunAborted as error:
                raise PartialFailure(error, done) from None
            held.namespaces.append(target)
            detail = {"path": "kernel", "namespace": target.namespace.name, "rules": rules}
            done.append(Outcome("inject", target.name, detail))
        return done

    def restore(self, tag: str) -> list[Outcome]:
        held = self.impaired.get(tag)
        if held is None:
            return []
        if held.kernel is not None:
            held.kernel.remove()
        outcomes = [Outcome("revert", target.name, {"path": "kernel"}) for target in held.namespaces]
        for proxy in held.proxies:
            counts = proxy.remove(tag)
            connections = proxy.connections_seen() - held.connections_before.get(proxy.name, 0)
            traffic = connections + held.open_at_start.get(proxy.name, 0)  # new ones, and kept-alive ones
            detail = {"path": "userspace", "connections": connections, "traffic": traffic, **counts}
            outcomes.append(Outcome("revert", proxy.name, detail))
        del self.impaired[tag]
        return outcomes

    def add_dns_rule(
        self, targets: Sequence[Target] | None, rule: LookupFault, tag: str, seed: int
    ) -> list[Outcome]:
        assert self.dns is not None, "spec guarantees a DNS server when DNS faults are declared"
        self.dns.add(tag, rule, seed=seed)
        return [Outcome("inject", ",".join(rule.patterns), {"dns": self.dns.address})]

    def remove_dns_rule(self, tag: str) -> list[Outcome]:
        assert self.dns is not None
        rule = self.dns.rules.get(tag)
        hits = self.dns.remove(tag)
        detail = {**hits, "traffic": hits.get("matched", 0)}  # the queries it matched: its traffic
        return [Outcome("revert", ",".join(rule.patterns) if rule else tag, detail)]


def _service(fault: FaultSpec) -> str:
    """The service a fault names ("" for the DNS faults, which name none)."""
    if fault.selection is None:
        return ""
    assert isinstance(fault.selection.selector, ServiceSelector)
    return fault.selection.selector.service


def system_resolver_prefix(server: FaultDnsServer, logs: RunDirectory) -> list[str]:
    """How a replica is started so that its system resolver (getaddrinfo, /etc/resolv.conf) is the
    run's DNS server: in a mount namespace of its own (unshare, as root) where /etc/resolv.conf is a
    file of the run's naming the server's own address on port 53; the host's file is untouched."""
    address = server.listen_on_port_53()
    kept = [line for line in _host_resolv_conf() if line.split()[:1] in (["search"], ["options"])]
    path = logs.write("resolv.conf", "\n".join([f"nameserver {address}", *kept]) + "\n", mode=0o644)
    mount = tool("mount")
    return [
        tool("unshare"),
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        f'{mount} --bind "$0" /etc/resolv.conf && exec "$@"',
        str(path),
    ]


def _host_resolv_conf() -> list[str]:
    try:
        return Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return []

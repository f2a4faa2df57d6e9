"""The local driver's target: gameday's own services (optionally each replica in a network
namespace of its own), and the fault proxies and DNS server that stand in front of them.
Faults act on it through small protocols (faults/base.py, faults/network.py, faults/dns.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from chaoslib_ext.drivers.local.services import LOOPBACK, Replica, ServiceSupervisor, endpoints, replica_port
from chaoslib_ext.errors import RunAborted
from chaoslib_ext.events import Timeline
from chaoslib_ext.netfault.dns import DNS_ZONE, FaultDnsServer, RunNames, loopback_socket
from chaoslib_ext.netfault.kernel import KernelTarget, Namespace, NamespaceFactory
from chaoslib_ext.netfault.proxy import FaultHub, FaultProxy
from chaoslib_ext.spec.model import FRONT, Experiment, NetworkFault
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.trust import RunDirectory
from chaoslib_ext.state.undo import tool


class LocalTarget:
    def __init__(
        self, experiment: Experiment, logs: RunDirectory, timeline: Timeline, ledger: Ledger
    ) -> None:
        services = experiment.services
        self.ledger = ledger
        self.timeline = timeline
        self.hub = FaultHub() if experiment.proxied or experiment.dns or experiment.load.front else None
        self.front: FaultProxy | None = None  # where the load goes, for `load.host: http://{proxied:web}`
        self.proxies: dict[str, list[FaultProxy]] = {}
        self.namespaces: dict[str, list[Namespace]] = {}
        self.dns: FaultDnsServer | None = None
        self.factory: NamespaceFactory | None = None
        try:
            isolated = [name for name, s in services.items() if s.isolation == "netns"]
            if isolated:
                tag = hashlib.sha1(ledger.run_id.encode()).hexdigest()[:4]
                self.factory = NamespaceFactory(tag, ledger)
                for name in isolated:
                    self.namespaces[name] = [
                        self.factory.create(name, i) for i in range(services[name].replicas)
                    ]
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
                field, name = experiment.load.front
                upstreams = [
                    (host, int(port))
                    for host, _, port in (a.rpartition(":") for a in shared[f"{field}:{name}"].split(","))
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
                prefix = system_resolver_prefix(self.dns, logs)
                timeline.add("network", "resolver", ", ".join(resolving), address=f"{self.dns_address}:53")
                placement.update({name: [(LOOPBACK, prefix)] * services[name].replicas for name in resolving})
            self.supervisor = ServiceSupervisor(services, logs, timeline, shared, placement, ledger)
        except BaseException:
            self.stop_network()
            raise

    # what pod faults need (faults.base.PodTarget)
    def live(self, service: str) -> list[Replica]:
        return self.supervisor.live(service)

    def kill(self, pod: Replica, signal_name: str) -> int:
        return self.supervisor.kill(pod, signal_name)

    def traffic_to(self, pod: Replica) -> int | None:
        """Connections through the replica's fault proxy so far; None if callers reach it directly."""
        proxies = self.proxies.get(pod.service.name)
        if proxies is None:
            return None
        proxy = proxies[pod.index]
        return proxy.connections_seen() + proxy.connections_open()

    # what network and DNS faults need
    def proxies_for(self, service: str) -> list[FaultProxy]:
        return self.proxies[service]

    def kernel_targets(self, fault: NetworkFault, where: str) -> list[KernelTarget]:
        """Each replica of a namespaced service: its namespace, and its port."""
        service = fault.service
        spec = self.supervisor.services[service]
        return [
            KernelTarget(f"{service}-{i}", namespace, replica_port(spec, i) or 0)
            for i, namespace in enumerate(self.namespaces[service])
        ]

    @property
    def dns_address(self) -> str:
        return self.dns.system_address if self.dns is not None and self.dns.system_address else ""

    def load_host(self, host: str) -> str:
        """The URL Locust is given: `http://{proxied:web}` becomes the front's address."""
        if self.front is None:
            return host
        return FRONT.sub(rf"\g<1>{self.front.address}\g<4>", host)

    def dns_server(self) -> FaultDnsServer:
        assert self.dns is not None, "spec guarantees a DNS server when DNS faults are declared"
        return self.dns

    def start(self) -> None:
        self.supervisor.start()

    def stop(self) -> None:
        try:
            self.supervisor.stop()
        finally:
            self.stop_network()

    def capped(self) -> int:
        """Connections the proxies refused because the run's descriptors would have run out."""
        return sum(proxy.stats.capped for proxies in self.proxies.values() for proxy in proxies)

    def stop_network(self) -> None:
        """Stop the proxies and DNS server, delete the namespaces; raise if something stays behind."""
        try:
            if self.hub is not None:
                capped = self.capped()
                if capped:
                    self.timeline.add("network", "capped", "proxies", refused=capped, limit=self.hub.capacity)
                self.hub.stop()
        finally:
            problems = self.factory.remove_all() if self.factory is not None else []
        for problem in problems:
            self.timeline.add("network", "cleanup-failed", detail=problem)
        if problems:
            raise RunAborted(
                f"could not remove what the run set up: {problems[0]}", hint="run `gameday recover` as root"
            )


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

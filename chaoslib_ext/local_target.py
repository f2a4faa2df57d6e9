"""The local driver's target: gameday's own services (optionally each replica in a network
namespace of its own), and the fault proxies and DNS server that stand in front of them.
Faults act on it through small protocols (faults/base.py, faults/network.py, faults/dns.py)."""

from __future__ import annotations

import hashlib

from .errors import RunAborted
from .ledger import Ledger
from .network.dns import DNS_ZONE, FaultDnsServer, RunNames, loopback_socket
from .network.kernel import KernelTarget, Namespace, NamespaceFactory
from .network.proxy import FaultHub, FaultProxy
from .services import LOOPBACK, Replica, ServiceSupervisor, endpoints, replica_port
from .spec.model import Experiment, NetworkFault
from .timeline import Timeline
from .trust import RunDirectory


class LocalTarget:
    def __init__(
        self, experiment: Experiment, logs: RunDirectory, timeline: Timeline, ledger: Ledger
    ) -> None:
        services = experiment.services
        self.ledger = ledger
        self.timeline = timeline
        self.hub = FaultHub() if experiment.proxied or experiment.dns else None
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
            if experiment.dns:
                assert self.hub is not None
                self.dns = FaultDnsServer(self.hub, loopback_socket(), RunNames(records))
                shared["dns"] = self.dns.address
            placement = {
                name: [(ns.address, ns.exec_prefix()) for ns in namespaces]
                for name, namespaces in self.namespaces.items()
            }
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
        return None if proxies is None else proxies[pod.index].connections_seen()

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

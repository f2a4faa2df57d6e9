"""The local driver's target: gameday's own services, and the fault proxies and DNS server that
stand in front of them. Faults act on it through small protocols (faults/base.py)."""

from __future__ import annotations

from pathlib import Path

from .network.dns import DNS_ZONE, FaultDnsServer
from .network.proxy import FaultHub, FaultProxy
from .services import Replica, ServiceSupervisor, endpoints, replica_port
from .spec.model import Experiment
from .timeline import Timeline


class LocalTarget:
    def __init__(self, experiment: Experiment, log_dir: Path, timeline: Timeline) -> None:
        services = experiment.services
        self.hub = FaultHub() if experiment.proxied or experiment.dns else None
        self.proxies: dict[str, list[FaultProxy]] = {}
        self.dns: FaultDnsServer | None = None
        shared = endpoints(services)
        try:
            for name in experiment.proxied:
                assert self.hub is not None
                service = services[name]
                self.proxies[name] = [
                    self.hub.proxy(f"{name}-{i}", ("127.0.0.1", replica_port(service, i) or 0))
                    for i in range(service.replicas)
                ]
                shared[f"proxied:{name}"] = ",".join(proxy.address for proxy in self.proxies[name])
            records: dict[str, list[str]] = {}
            for name, service in services.items():
                if service.port is None:
                    continue
                names = [f"{name}-{i}.{DNS_ZONE}" for i in range(service.replicas)]
                records.update({host: ["127.0.0.1"] for host in [*names, f"{name}.{DNS_ZONE}"]})
                shared[f"hostnames:{name}"] = ",".join(
                    f"{host}:{replica_port(service, i)}" for i, host in enumerate(names)
                )
            if experiment.dns:
                assert self.hub is not None
                self.dns = FaultDnsServer(self.hub, records)
                shared["dns"] = self.dns.address
        except BaseException:
            self.stop_network()
            raise
        self.supervisor = ServiceSupervisor(services, log_dir, timeline, shared)

    # what pod faults need (faults.base.PodTarget)
    def live(self, service: str) -> list[Replica]:
        return self.supervisor.live(service)

    def kill(self, pod: Replica, signal_name: str) -> int:
        return self.supervisor.kill(pod, signal_name)

    # what network and DNS faults need
    def proxies_for(self, service: str) -> list[FaultProxy]:
        return self.proxies[service]

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

    def stop_network(self) -> None:
        if self.hub is not None:
            self.hub.stop()

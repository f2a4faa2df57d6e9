"""dns-error, dns-delay and dns-spoof: rules on a fault-injecting DNS server. The local driver has
one for the run (services reach it through {dns}); the docker driver puts one in each selected
container (network/container_dns.py)."""

from __future__ import annotations

from typing import Any, Protocol

from ..docker_target import ContainerInstance
from ..network.container_dns import ContainerResolver
from ..network.dns import DnsRule, FaultDnsServer
from ..spec.model import ContainerSelector, DnsFault
from .aftermath import ContainerTracker, settle
from .base import Fault, FaultRecord, selection_size


class DnsTarget(Protocol):
    def dns_server(self) -> FaultDnsServer: ...


class ContainerDnsTarget(ContainerTracker, Protocol):
    def containers(self, selector: ContainerSelector, where: str) -> list[Any]: ...

    def acquire_resolver(self, container: Any) -> ContainerResolver: ...

    def release_resolver(self, container: Any) -> None: ...

    def resolver_of(self, container: Any) -> ContainerResolver: ...


class DnsFaultAction(Fault):
    reversible = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.containers: list[tuple[Any, ContainerInstance]] = []  # docker: whose lookups it hits

    @property
    def rule_id(self) -> str:
        return f"fault-{self.index + 1}"

    @property
    def params(self) -> DnsFault:
        return self.spec.params  # type: ignore[return-value]

    def rule(self) -> DnsRule:
        params = self.params
        return DnsRule(
            kind=self.spec.kind.removeprefix("dns-"),
            patterns=params.patterns,
            rcode=params.rcode,
            probability=params.probability,
            delay=params.delay,
            addresses=params.addresses,
        )

    def apply(self, target: Any) -> list[FaultRecord]:
        if self.params.selector is not None:
            return self._apply_in_containers(target)
        server = target.dns_server()
        server.add(self.rule_id, self.rule(), seed=self.seed)
        return [self.record("inject", ",".join(self.params.patterns), {"dns": server.address})]

    def _apply_in_containers(self, target: ContainerDnsTarget) -> list[FaultRecord]:
        params = self.params
        assert params.selector is not None
        found = target.containers(params.selector, str(self.spec.where))
        size = selection_size(params.count, params.percent, len(found), default=len(found))
        chosen = sorted(self.rng.sample(found, size), key=lambda c: c.name)
        records = []
        for container in chosen:
            resolver = target.acquire_resolver(container)
            self.containers.append((container, ContainerInstance.of(container)))
            resolver.server.add(self.rule_id, self.rule(), seed=self.rng.randrange(2**31))
            records.append(
                self.record(
                    "inject",
                    container.name,
                    {"names": list(params.patterns), "dns": resolver.address, "upstream": resolver.upstream},
                )
            )
        return records

    def revert(self, target: Any) -> list[FaultRecord]:
        if self.params.selector is not None:
            return self._revert_in_containers(target)
        hits = target.dns_server().remove(self.rule_id)
        return [self.record("revert", ",".join(self.params.patterns), hits)]

    def _revert_in_containers(self, target: ContainerDnsTarget) -> list[FaultRecord]:
        outcomes = []
        for container, instance in self.containers:
            hits = target.resolver_of(container).server.remove(self.rule_id)
            target.release_resolver(container)
            outcomes.append((instance, hits))
        self.containers = []
        return settle(self, target, outcomes)

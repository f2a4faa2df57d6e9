"""dns-error, dns-delay and dns-spoof: rules on a fault-injecting DNS server. The local driver has
one for the run (services reach it through {dns}); the docker driver puts one in each selected
container (network/container_dns.py)."""

from __future__ import annotations

from typing import Any, Protocol

from chaoslib_ext.drivers.docker.aftermath import ContainerTracker, raise_if_lost, settle
from chaoslib_ext.drivers.docker.driver import ContainerInstance
from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import Fault, FaultError, FaultRecord, choose, selection_size
from chaoslib_ext.netfault.dns import DnsRule, FaultDnsServer
from chaoslib_ext.netfault.namespace_dns import ContainerResolver
from chaoslib_ext.spec.model import ContainerSelector, DnsFault


class DnsTarget(Protocol):
    def dns_server(self) -> FaultDnsServer: ...


class ContainerDnsTarget(ContainerTracker, Protocol):
    def containers(self, selector: ContainerSelector, where: str, own_network: bool = False) -> list[Any]: ...

    def acquire_resolver(self, instance: ContainerInstance, resolv_conf: str) -> ContainerResolver: ...

    def release_resolver(self, instance: ContainerInstance) -> None: ...

    def resolver_of(self, instance: ContainerInstance) -> ContainerResolver: ...


class DnsFaultAction(Fault):
    reversible = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.instances: list[ContainerInstance] = []  # docker: the containers whose lookups it hits

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
        found = target.containers(params.selector, str(self.spec.where), own_network=True)
        size = selection_size(params.count, params.percent, len(found), default=len(found))
        chosen = choose(self.rng, found, size)
        records: list[FaultRecord] = []
        for container in chosen:
            instance = ContainerInstance.of(container)
            try:
                resolver = target.acquire_resolver(instance, container.attrs["ResolvConfPath"])
            except RunAborted as error:
                raise FaultError(error, records) from None
            self.instances.append(instance)
            resolver.server.add(self.rule_id, self.rule(), seed=self.rng.randrange(2**31))
            detail = {"names": list(params.patterns), "dns": resolver.address, "upstream": resolver.upstream}
            records.append(self.record("inject", container.name, detail))
        return records

    def revert(self, target: Any) -> list[FaultRecord]:
        if self.params.selector is not None:
            return self._revert_in_containers(target)
        hits = target.dns_server().remove(self.rule_id)
        detail = {**hits, "traffic": hits.get("matched", 0)}  # the queries it matched: its traffic
        return [self.record("revert", ",".join(self.params.patterns), detail)]

    def _revert_in_containers(self, target: ContainerDnsTarget) -> list[FaultRecord]:
        """Each container on its own: one that cannot be put back stays listed for the clean-up
        to try again, and does not keep the others from being put back."""
        outcomes, problems = [], []
        for instance in list(self.instances):
            hits = target.resolver_of(instance).server.remove(self.rule_id)
            try:
                target.release_resolver(instance)
            except RunAborted as error:
                problems.append(error)
                continue
            self.instances.remove(instance)
            outcomes.append((instance, hits))
        records = settle(self, target, outcomes)
        if problems:
            raise FaultError(problems[0], records)
        raise_if_lost(self, records)
        return records

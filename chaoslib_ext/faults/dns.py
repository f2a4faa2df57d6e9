"""dns-error, dns-delay and dns-spoof: rules on the run's fault-injecting DNS server."""

from __future__ import annotations

from typing import Protocol

from ..network.dns import DnsRule, FaultDnsServer
from ..spec.model import DnsFault
from .base import Fault, FaultRecord


class DnsTarget(Protocol):
    def dns_server(self) -> FaultDnsServer: ...


class DnsFaultAction(Fault):
    reversible = True

    @property
    def rule_id(self) -> str:
        return f"fault-{self.index + 1}"

    def apply(self, target: DnsTarget) -> list[FaultRecord]:
        params: DnsFault = self.spec.params  # type: ignore[assignment]
        rule = DnsRule(
            kind=self.spec.kind.removeprefix("dns-"),
            patterns=params.patterns,
            rcode=params.rcode,
            probability=params.probability,
            delay=params.delay,
            addresses=params.addresses,
        )
        server = target.dns_server()
        server.add(self.rule_id, rule, seed=self.seed)
        return [
            self.record(
                "inject",
                ",".join(params.patterns),
                {"dns": server.address},
            )
        ]

    def revert(self, target: DnsTarget) -> list[FaultRecord]:
        hits = target.dns_server().remove(self.rule_id)
        patterns = ",".join(self.spec.params.patterns)  # type: ignore[union-attr]
        return [self.record("revert", patterns, hits)]

"""network-latency, -loss, -reset, -bandwidth and -partition: toxics on the proxies in front of a
service's replicas. Reverting removes exactly the toxic this fault added."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Protocol

from ..network.proxy import FaultProxy, Toxic
from ..spec.model import NetworkFault
from .base import Fault, FaultRecord, selection_size


class ProxyTarget(Protocol):
    def proxies_for(self, service: str) -> list[FaultProxy]: ...


def toxic_for(kind: str, fault: NetworkFault) -> Toxic:
    return Toxic(
        kind=kind.removeprefix("network-"),
        direction=fault.direction,
        delay=fault.delay,
        jitter=fault.jitter,
        distribution=fault.distribution,
        probability=fault.probability,
        rate=fault.rate,
        mode=fault.mode,
    )


class NetworkFaultAction(Fault):
    reversible = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.hit: list[FaultProxy] = []
        self.stats_before: dict[str, dict[str, int]] = {}

    @property
    def toxic_id(self) -> str:
        return f"fault-{self.index + 1}"

    def apply(self, target: ProxyTarget) -> list[FaultRecord]:
        params: NetworkFault = self.spec.params  # type: ignore[assignment]
        proxies = target.proxies_for(params.service)
        size = selection_size(params.count, params.percent, len(proxies), default=len(proxies))
        self.hit = sorted(self.rng.sample(proxies, size), key=lambda proxy: proxy.name)
        toxic = toxic_for(self.spec.kind, params)
        self.stats_before = {proxy.name: asdict(proxy.stats) for proxy in self.hit}
        for proxy in self.hit:
            proxy.add(self.toxic_id, toxic, seed=self.rng.randrange(2**31))
        return [
            FaultRecord(
                time.time(),
                self.index,
                self.label,
                "inject",
                proxy.name,
                {"proxy": proxy.address, "upstream": f"{proxy.upstream[0]}:{proxy.upstream[1]}"},
            )
            for proxy in self.hit
        ]

    def revert(self, target: ProxyTarget) -> list[FaultRecord]:
        records = []
        for proxy in self.hit:
            proxy.remove(self.toxic_id)
            stats = proxy.stats
            records.append(
                FaultRecord(
                    time.time(),
                    self.index,
                    self.label,
                    "revert",
                    proxy.name,
                    {
                        "connections": stats.connections,
                        "refused": stats.refused,
                        "blackholed": stats.blackholed,
                        "reset": stats.reset,
                    },
                )
            )
        self.hit = []
        return records

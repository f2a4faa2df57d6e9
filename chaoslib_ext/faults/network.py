"""network-latency, -loss, -reset, -bandwidth and -partition: toxics on the proxies in front of a
service's replicas. Reverting removes exactly the toxic this fault added."""

from __future__ import annotations

from typing import Any, Protocol, cast

from chaoslib_ext.drivers.docker.aftermath import ContainerTracker, raise_if_lost, settle
from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import Fault, FaultError, FaultRecord, choose, selection_size
from chaoslib_ext.netfault.kernel import KernelRule, KernelTarget, fault_rules, run
from chaoslib_ext.netfault.proxy import FaultProxy, Toxic
from chaoslib_ext.spec.model import NetworkFault
from chaoslib_ext.state.ledger import Ledger


class NetworkTarget(Protocol):
    ledger: Ledger

    def proxies_for(self, service: str) -> list[FaultProxy]: ...

    def kernel_targets(self, fault: NetworkFault, where: str) -> list[KernelTarget]: ...


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
        self.connections_before: dict[str, int] = {}
        self.open_at_start: dict[str, int] = {}
        self.kernel_rules: list[tuple[int, KernelRule]] = []  # (ledger entry, rule) for revert
        self.kernel_hits: list[KernelTarget] = []

    @property
    def toxic_id(self) -> str:
        return f"fault-{self.index + 1}"

    def apply(self, target: NetworkTarget) -> list[FaultRecord]:
        params: NetworkFault = self.spec.params  # type: ignore[assignment]
        if params.path == "kernel":
            return self._apply_kernel(target, params)
        proxies = target.proxies_for(params.service)
        size = selection_size(params.count, params.percent, len(proxies), default=len(proxies))
        self.hit = choose(self.rng, proxies, size)
        toxic = toxic_for(self.spec.kind, params)
        self.connections_before = {proxy.name: proxy.connections_seen() for proxy in self.hit}
        self.open_at_start = {proxy.name: proxy.connections_open() for proxy in self.hit}
        for proxy in self.hit:
            proxy.add(self.toxic_id, toxic, seed=self.rng.randrange(2**31))
        return [
            self.record(
                "inject",
                proxy.name,
                {
                    "path": "userspace",
                    "proxy": proxy.address,
                    "upstream": f"{proxy.upstream[0]}:{proxy.upstream[1]}",
                },
            )
            for proxy in self.hit
        ]

    def _apply_kernel(self, target: NetworkTarget, params: NetworkFault) -> list[FaultRecord]:
        """iptables rules and qdiscs in each chosen replica's namespace, each in the ledger first."""
        replicas = target.kernel_targets(params, str(self.spec.where))
        size = selection_size(params.count, params.percent, len(replicas), default=len(replicas))
        chosen = choose(self.rng, replicas, size)
        records = []
        for hit in chosen:
            namespace = hit.namespace
            comment = f"gameday:{target.ledger.run_id}:{self.toxic_id}"
            rules = fault_rules(
                namespace,
                self.spec.kind,
                hit.port,
                params.direction,
                comment,
                params.probability,
                params.rate,
                params.mode,
                params.delay,
                params.jitter,
                params.distribution,
            )
            for rule in rules:
                entry = target.ledger.record(f"{rule.what} in {namespace.name}", rule.undo)
                self.kernel_rules.append((entry, rule))  # before it acts: a signal now leaves it to revert
                try:
                    run(rule.add, rule.place)
                except RunAborted as error:
                    self.kernel_rules.pop()
                    target.ledger.done(entry)  # not added, so never deleted (it may be another fault's)
                    raise FaultError(error, records) from None
            self.kernel_hits.append(hit)
            records.append(
                self.record(
                    "inject",
                    hit.name,
                    {"path": "kernel", "namespace": namespace.name, "rules": [rule.what for rule in rules]},
                )
            )
        return records

    def revert(self, target: NetworkTarget) -> list[FaultRecord]:
        return self._revert_kernel(target) + self._revert_proxies()

    def _revert_kernel(self, target: NetworkTarget) -> list[FaultRecord]:
        problems = []
        for entry, rule in reversed(self.kernel_rules):
            problem = rule.undo.perform()
            if problem is None:
                target.ledger.done(entry)
            else:
                problems.append(problem)
        self.kernel_rules = []
        if problems:
            raise RunAborted(f"could not remove a kernel rule: {problems[0]}", hint="run `gameday recover`")
        hits, self.kernel_hits = self.kernel_hits, []
        if any(hit.instance is not None for hit in hits):  # containers: say what became of each
            tracker = cast(ContainerTracker, target)  # only the docker target finds instances
            records = settle(self, tracker, [(hit.instance, {"path": "kernel"}) for hit in hits])
            raise_if_lost(self, records)
            return records
        return [self.record("revert", hit.name, {"path": "kernel"}) for hit in hits]

    def _revert_proxies(self) -> list[FaultRecord]:
        records = []
        for proxy in self.hit:
            counts = proxy.remove(self.toxic_id)
            connections = proxy.connections_seen() - self.connections_before.get(proxy.name, 0)
            traffic = connections + self.open_at_start.get(proxy.name, 0)  # new ones, and kept-alive ones
            detail = {"path": "userspace", "connections": connections, "traffic": traffic, **counts}
            records.append(self.record("revert", proxy.name, detail))
        self.hit = []
        return records

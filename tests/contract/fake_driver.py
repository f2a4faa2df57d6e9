"""An in-memory driver that carries out every fault kind on pretend targets: the contract's
fast half, and the model of what a driver owes the engine (record before acting, undo by tag,
say what it did, stop half-way with what it did so far)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chaoslib_ext.drivers.base import BuildContext, Driver, RunContext
from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults import KINDS
from chaoslib_ext.faults.base import (
    FaultSpec,
    LookupFault,
    Outcome,
    PartialFailure,
    Scope,
    Selection,
    Signal,
    Suspension,
    Target,
    TrafficFault,
)
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.state.ledger import Ledger


@dataclass(frozen=True)
class FakeSelector:
    group: str

    def describe(self) -> str:
        return f"fakes of {self.group}"


@dataclass(frozen=True)
class FakeUndo:
    """What a fake change writes to the ledger (never carried out by `recover`)."""

    tag: str
    target: str

    def to_data(self) -> dict[str, Any]:
        return {"kind": "fake", "tag": self.tag, "target": self.target}

    def perform(self) -> str | None:
        return None


@dataclass
class FakeTarget:
    name: str
    running: bool = True
    starts: int = 1
    suspended: Suspension | None = None
    impaired: dict[str, TrafficFault] = field(default_factory=dict)  # by fault tag
    lookups_hit: dict[str, LookupFault] = field(default_factory=dict)


class FakeDriver(Driver):
    name = "fake"
    kinds = frozenset(kind.kind for kind in KINDS.values())
    undo_kinds = frozenset({"fake"})
    selection_properties: ClassVar[dict[Scope, dict[str, Any]]] = {"process": {}, "network": {}, "names": {}}
    offline = True
    parse_selection = staticmethod(lambda kind, spec, path, context: Selection(FakeSelector("a")))

    def __init__(
        self, experiment: Experiment | None, names: Sequence[str] = ("a-0", "a-1", "a-2", "a-3")
    ) -> None:
        self.fakes = {name: FakeTarget(name) for name in names}
        self.ledger: Ledger | None = None
        self.held: dict[str, list[tuple[int, FakeTarget]]] = {}  # by tag: (ledger entry, target)
        self.run_dns: dict[str, LookupFault] = {}  # rules on the run's own DNS server
        self.fail_on: str | None = None  # a target whose change fails (to test half-way failures)

    @classmethod
    def check_experiment(cls, experiment: Experiment, context: BuildContext) -> None:
        """No rules of its own."""

    def lock_key(self) -> str:
        return "fake"

    def candidates(self, fault: FaultSpec) -> tuple[str, ...]:
        return tuple(self.fakes) if fault.selection is not None else ()

    def describe_targets(self, fault: FaultSpec, size: int, total: int) -> str:
        return f"{size} of {total} fakes"

    def start(self, run: RunContext) -> None:
        self.ledger = run.ledger

    def stop(self) -> None:
        """Nothing to take down."""

    def targets(self, selection: Selection, scope: Scope, where: str) -> Sequence[Target]:
        return [fake for fake in self.fakes.values() if fake.running or scope != "process"]

    def kill(self, target: Target, signal: Signal) -> dict[str, Any]:
        fake = self._fake(target)
        fake.running = False
        return {"signal_sent": signal}

    def restart(self, target: Target) -> dict[str, Any]:
        fake = self._fake(target)
        fake.starts += 1
        return {"starts": fake.starts}

    def suspend(self, target: Target, how: Suspension, tag: str) -> dict[str, Any]:
        fake = self._hold(target, tag)
        fake.suspended = how
        return {}

    def resume(self, tag: str) -> list[Outcome]:
        outcomes = []
        for fake in self._release(tag):
            fake.suspended = None
            outcomes.append(Outcome("resume", fake.name))
        return outcomes

    def impair(
        self, targets: Sequence[Target], impairment: TrafficFault, tag: str, seed: int
    ) -> list[Outcome]:
        done: list[Outcome] = []
        for target in targets:
            try:
                self._hold(target, tag).impaired[tag] = impairment
            except RunAborted as error:
                raise PartialFailure(error, done) from None
            done.append(Outcome("inject", target.name))
        return done

    def restore(self, tag: str) -> list[Outcome]:
        outcomes = []
        for fake in self._release(tag):
            del fake.impaired[tag]
            outcomes.append(Outcome("revert", fake.name))
        return outcomes

    def add_dns_rule(
        self, targets: Sequence[Target] | None, rule: LookupFault, tag: str, seed: int
    ) -> list[Outcome]:
        if targets is None:
            self.run_dns[tag] = rule
            return [Outcome("inject", ",".join(rule.patterns))]
        for target in targets:
            self._hold(target, tag).lookups_hit[tag] = rule
        return [Outcome("inject", target.name) for target in targets]

    def remove_dns_rule(self, tag: str) -> list[Outcome]:
        if tag in self.run_dns:
            rule = self.run_dns.pop(tag)
            return [Outcome("revert", ",".join(rule.patterns))]
        outcomes = []
        for fake in self._release(tag):
            del fake.lookups_hit[tag]
            outcomes.append(Outcome("revert", fake.name))
        return outcomes

    def _fake(self, target: Target) -> FakeTarget:
        assert isinstance(target, FakeTarget) and target is self.fakes[target.name]
        return target

    def _hold(self, target: Target, tag: str) -> FakeTarget:
        """Record the change before making it, as every driver must."""
        assert self.ledger is not None
        fake = self._fake(target)
        with self.ledger.intent(f"{tag} on {fake.name}", FakeUndo(tag, fake.name), RunAborted) as entry:
            self.held.setdefault(tag, []).append((entry, fake))
            if fake.name == self.fail_on:
                self.held[tag].pop()
                raise RunAborted(f"{fake.name} refused the change")
        return fake

    def _release(self, tag: str) -> list[FakeTarget]:
        assert self.ledger is not None
        released = []
        for entry, fake in self.held.pop(tag, []):
            self.ledger.done(entry)
            released.append(fake)
        return released

"""What every fault kind is, the families network-* and dns-* kinds belong to, and what a fault
may ask of a driver.

A fault kind is a frozen dataclass of its own parameters that says how it is described in a plan,
whether it lasts, and how it is applied and reverted through the `Actions` a driver offers. It
never knows which driver it runs on: the driver chooses how (a proxy, iptables, the Docker API,
a Chaos Mesh object) and keeps what it needs to undo it, by the fault's tag.
"""

from __future__ import annotations

import fnmatch
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar

from chaoslib_ext.errors import Location, RunAborted
from chaoslib_ext.faults.schema import NAMES, PERCENT
from chaoslib_ext.units import format_percent, parse_percent

Scope = Literal[
    "process", "network", "names"
]  # what a fault acts on: running targets, their traffic, lookups
Signal = Literal["SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP"]
SIGNALS: tuple[Signal, ...] = ("SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP")
Suspension = Literal["stop", "pause"]


class Selector(Protocol):
    """A driver's way of naming targets (a service, a label selector...)."""

    def describe(self) -> str: ...


class Target(Protocol):
    """One thing a fault may hit: a replica, a container, a pod."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Selection:
    """Which targets a fault may hit (the driver's selector) and how many per injection."""

    selector: Selector
    count: int | None = None
    percent: float | None = None

    def size(self, available: int, every: bool) -> int:
        """How many of `available` targets one injection hits: count, or percent rounded up (at
        least 1); without either, every one or one."""
        if self.count is not None:
            return min(self.count, available)
        if self.percent is not None:
            return min(available, max(1, math.ceil(self.percent * available)))
        return available if every else min(1, available)

    def share_text(self) -> str:
        """The share asked for, as written: "2", "50%", or "1" for a fault that hits one."""
        if self.count is not None:
            return str(self.count)
        return "1" if self.percent is None else f"{self.percent * 100:g}%"


T = TypeVar("T")


def choose(
    rng: random.Random, items: Sequence[T], size: int, name: Callable[[T], str] = attrgetter("name")
) -> list[T]:
    """`size` of `items` at random, in name order: one seed picks the same names whatever order a
    driver lists its targets in, so that `gameday plan` can name them in advance."""
    by_name = sorted(items, key=name)
    return sorted(rng.sample(by_name, size), key=name)


@dataclass(frozen=True)
class Outcome:
    """What one driver action did to one target, for the report and the timeline."""

    action: str  # kill, inject, revert, stop, start, restarted, exited, removed...
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


class PartialFailure(RunAborted):
    """An action failed part-way: what it did before (its outcomes) still belongs in the report."""

    def __init__(self, error: RunAborted, done: list[Outcome]) -> None:
        super().__init__(error.message, where=error.where, hint=error.hint)
        self.done = done


def each_victim(
    victims: Sequence[Target] | None, action: str, act: Callable[[Target], dict[str, Any]]
) -> list[Outcome]:
    """`act` on each victim in turn, an outcome for each; if one fails, PartialFailure with the
    outcomes of those before it."""
    done: list[Outcome] = []
    for victim in victims or ():
        try:
            detail = act(victim)
        except RunAborted as error:
            raise PartialFailure(error, done) from None
        done.append(Outcome(action, victim.name, detail))
    return done


class TargetLost(PartialFailure):
    """A target a lasting fault held exited or was removed before the fault ended: everything was
    put back, but the fault did not last as planned, so the run cannot be judged as planned."""


class Actions(Protocol):
    """What faults ask of a driver (drivers/base.py's Driver offers it). Lasting changes are kept
    by the driver under the fault's tag, recorded in the ledger before they are made, and undone
    by tag: a fault interrupted half-way is reverted as far as it went."""

    def targets(self, selection: Selection, scope: Scope, where: str) -> Sequence[Target]:
        """The targets the selection names now (for `process`, only running ones)."""

    def traffic_to(self, target: Target) -> int | None:
        """Connections the target has carried so far, where the driver can tell."""

    def kill(self, target: Target, signal: Signal) -> dict[str, Any]: ...

    def restart(self, target: Target) -> dict[str, Any]: ...

    def suspend(self, target: Target, how: Suspension, tag: str) -> dict[str, Any]: ...

    def resume(self, tag: str) -> list[Outcome]: ...

    def impair(
        self, targets: Sequence[Target], impairment: TrafficFault, tag: str, seed: int
    ) -> list[Outcome]: ...

    def restore(self, tag: str) -> list[Outcome]: ...

    def add_dns_rule(
        self, targets: Sequence[Target] | None, rule: LookupFault, tag: str, seed: int
    ) -> list[Outcome]:
        """`targets` None: the run's own DNS server, for every service that resolves through it."""

    def remove_dns_rule(self, tag: str) -> list[Outcome]: ...


class SpecContext(Protocol):
    """Where a kind reports what a schema cannot say about its parameters."""

    def error(self, path: tuple[str | int, ...], message: str, hint: str = "") -> None: ...


class FaultKind(ABC):
    """One kind of fault: subclasses are frozen dataclasses of its parameters, registered under
    their `kind` (and any aliases) with faults.registry.register."""

    kind: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()  # other names users may write for it
    scope: ClassVar[Scope]
    lasting: ClassVar[bool]  # reverted at the end of its window (else: instant, may repeat)
    every_by_default: ClassVar[bool]  # without count or percent: every target (else one)
    properties: ClassVar[dict[str, Any]] = {}  # the JSON Schema of its own fields
    required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def parse(cls, spec: Mapping[str, Any], path: tuple[str | int, ...], context: SpecContext) -> Self:
        """From schema-valid YAML (durations and percentages still as written)."""

    @abstractmethod
    def describe(self, unit: str = "connections") -> str:
        """What it does, for `gameday plan` (`unit`: what the driver decides on, for shares)."""

    @property
    def repeat_every(self) -> float | None:
        """An instant fault repeated every so many seconds of the fault phase (None: once)."""
        return None

    @abstractmethod
    def apply(self, driver: Actions, victims: Sequence[Target] | None, tag: str, seed: int) -> list[Outcome]:
        """Inject once (at each planned time); raise PartialFailure after a part, RunAborted before."""

    def revert(self, driver: Actions, tag: str) -> list[Outcome]:
        """Take a lasting fault back; an instant one (a kill) has nothing to undo."""
        return []


Direction = Literal["upstream", "downstream", "both"]
ONE_WAY = {"both": "both directions", "upstream": "requests only", "downstream": "responses only"}


@dataclass(frozen=True, kw_only=True)
class TrafficFault(FaultKind):
    """What the network-* kinds share: they act on the traffic of their targets, in one direction
    or both, from their apply to their revert; the driver decides how (a proxy, iptables and tc,
    a Chaos Mesh object) and undoes exactly what this fault added."""

    scope = "network"
    lasting = True
    every_by_default = True

    direction: Direction = "both"

    def applies(self, direction: str) -> bool:
        """Whether it acts on `direction` (upstream or downstream) of a connection."""
        return self.direction in ("both", direction)

    def apply(self, driver: Actions, victims: Sequence[Target] | None, tag: str, seed: int) -> list[Outcome]:
        return driver.impair(victims or [], self, tag, seed)

    def revert(self, driver: Actions, tag: str) -> list[Outcome]:
        return driver.restore(tag)


@dataclass(frozen=True, kw_only=True)
class LookupFault(FaultKind):
    """What the dns-* kinds share: a rule on the names that match `names` (globs), for a share of
    the lookups, held from the fault's apply to its revert by the DNS server the driver puts in
    the way (the run's own, or one in each target's network namespace)."""

    scope = "names"
    lasting = True
    every_by_default = True
    properties: ClassVar[dict[str, Any]] = {"names": NAMES, "probability": PERCENT}

    patterns: tuple[str, ...]
    probability: float = 1.0  # the share of matching lookups it acts on

    @staticmethod
    def common(spec: Mapping[str, Any]) -> dict[str, Any]:
        """The fields every DNS fault parses the same way."""
        return {
            "patterns": tuple(spec["names"]),
            "probability": parse_percent(spec.get("probability", "100%")),
        }

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern.lower().rstrip(".")) for pattern in self.patterns)

    def names_text(self) -> str:
        chance = "" if self.probability >= 1 else f" for {format_percent(self.probability)} of queries"
        return ", ".join(self.patterns) + chance

    def apply(self, driver: Actions, victims: Sequence[Target] | None, tag: str, seed: int) -> list[Outcome]:
        return driver.add_dns_rule(victims, self, tag, seed)

    def revert(self, driver: Actions, tag: str) -> list[Outcome]:
        return driver.remove_dns_rule(tag)


@dataclass(frozen=True)
class FaultSpec:
    """One fault of an experiment: its kind's parameters, which targets, and when."""

    kind: str  # as written in the experiment (an alias stays an alias in reports)
    params: FaultKind
    selection: Selection | None  # None: the fault names no targets (the local driver's DNS faults)
    after: float  # offset into the fault phase
    duration: float | None  # None: until the end of the fault phase (instant faults: none)
    seed: int | None
    where: Location

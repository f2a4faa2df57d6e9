"""The fault interface the engine drives, independent of where the targets live."""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol, TypeVar

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.spec.model import FaultSpec


@dataclass
class FaultRecord:
    """What one action of a fault did, for the report and the timeline."""

    at: float
    fault_index: int
    fault: str
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


class FaultError(RunAborted):
    """A fault failed part-way: what it did before (its records) still belongs in the report."""

    def __init__(self, error: RunAborted, records: list[FaultRecord]) -> None:
        super().__init__(error.message, where=error.where, hint=error.hint)
        self.records = records


class Pod(Protocol):
    name: str

    @property
    def pid(self) -> int | None: ...


class PodTarget(Protocol):
    """What a driver offers pod faults: the live pods of a service, and a way to signal one."""

    def live(self, service: str) -> list[Pod]: ...

    def kill(self, pod: Any, signal_name: str) -> int: ...

    def traffic_to(self, pod: Any) -> int | None:
        """Connections the pod has carried so far, where the driver can tell (None otherwise)."""


class Fault(ABC):
    """A fault is applied at its planned times and, if it lasts, reverted at the end of its window."""

    reversible = False  # pod-kill heals by itself (the restart policy); network and DNS faults last

    def __init__(self, index: int, spec: FaultSpec, seed: int) -> None:
        self.index = index
        self.spec = spec
        self.seed = seed
        self.rng = random.Random(seed)

    @property
    def label(self) -> str:
        return self.spec.kind

    def record(self, action: str, target: str, detail: dict[str, Any]) -> FaultRecord:
        """What this fault just did to `target`, stamped now."""
        return FaultRecord(time.time(), self.index, self.label, action, target, detail)

    @abstractmethod
    def apply(self, target: Any) -> list[FaultRecord]:
        """Inject once (called at each planned time); raise RunAborted if it cannot."""

    def revert(self, target: Any) -> list[FaultRecord]:
        """Take the fault back; faults that heal by themselves (a killed pod) have nothing to undo."""
        return []


def selection_size(count: int | None, percent: float | None, available: int, default: int) -> int:
    """How many of `available` targets one injection hits: count, or percent rounded up (at least 1)."""
    if count is not None:
        return min(count, available)
    if percent is not None:
        return min(available, max(1, math.ceil(percent * available)))
    return min(default, available)


T = TypeVar("T")


def choose(
    rng: random.Random, items: Sequence[T], size: int, name: Callable[[T], str] = attrgetter("name")
) -> list[T]:
    """`size` of `items` at random, in name order: one seed picks the same names whatever order a
    driver lists its targets in, so that `gameday plan` can name them in advance."""
    by_name = sorted(items, key=name)
    return sorted(rng.sample(by_name, size), key=name)


def build_fault(index: int, spec: FaultSpec, seed: int) -> Fault:
    from chaoslib_ext.faults.container import ContainerFaultAction
    from chaoslib_ext.faults.dns import DnsFaultAction
    from chaoslib_ext.faults.network import NetworkFaultAction
    from chaoslib_ext.faults.pod_kill import PodKillFault

    families: dict[str, type[Fault]] = {
        "pod": PodKillFault,
        "network": NetworkFaultAction,
        "dns": DnsFaultAction,
        "container": ContainerFaultAction,
    }
    return families[spec.family](index, spec, seed)

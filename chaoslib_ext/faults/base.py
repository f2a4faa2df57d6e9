"""The fault interface the engine drives, independent of where the targets live."""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import RunAborted
from ..spec.model import FaultSpec


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


def build_fault(index: int, spec: FaultSpec, seed: int) -> Fault:
    from .container import ContainerFaultAction
    from .dns import DnsFaultAction
    from .network import NetworkFaultAction
    from .pod_kill import PodKillFault

    families: dict[str, type[Fault]] = {
        "pod": PodKillFault,
        "network": NetworkFaultAction,
        "dns": DnsFaultAction,
        "container": ContainerFaultAction,
    }
    return families[spec.family](index, spec, seed)

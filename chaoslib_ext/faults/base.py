"""The fault interface the engine drives, independent of where the targets live."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..spec.model import FaultSpec


@dataclass
class FaultRecord:
    """What one action of a fault did, for the report (and, later, for the undo ledger)."""

    at: float
    fault_index: int
    fault: str
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


class Pod(Protocol):
    name: str

    @property
    def pid(self) -> int | None: ...


class PodTarget(Protocol):
    """What a driver offers pod faults: the live pods of a service, and a way to signal one."""

    def live(self, service: str) -> list[Pod]: ...

    def kill(self, pod: Any, signal_name: str) -> int: ...


class Fault(ABC):
    """A fault is applied at its planned times and reverted at the end of its window."""

    def __init__(self, index: int, spec: FaultSpec, seed: int) -> None:
        self.index = index
        self.spec = spec
        self.seed = seed
        self.rng = random.Random(seed)

    @property
    def label(self) -> str:
        return self.spec.kind

    @abstractmethod
    def apply(self, target: PodTarget) -> list[FaultRecord]:
        """Inject once (called at each planned time); raise RunAborted if it cannot."""

    def revert(self, target: PodTarget) -> list[FaultRecord]:
        """Take the fault back; faults that heal by themselves (a killed pod) have nothing to undo."""
        return []


def build_fault(index: int, spec: FaultSpec, seed: int) -> Fault:
    from .pod_kill import PodKillFault

    kinds: dict[str, type[Fault]] = {"pod-kill": PodKillFault}
    return kinds[spec.kind](index, spec, seed)

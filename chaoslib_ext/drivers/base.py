"""The one interface every driver implements: where the targets live, how faults reach them,
and what the host must offer for that.

A driver is made from the experiment without touching anything. `validate` uses only its class
(how its faults select targets, the kinds it carries out, its rules for the file); `plan` adds
`preflight` (the host) and the candidates of each fault; `run` starts it, and the faults act
through the `faults.base.Actions` it implements, by tag, recording each lasting change in the
run's ledger before making it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from chaoslib_ext.errors import Location, RunAborted, SpecError
from chaoslib_ext.events import Timeline
from chaoslib_ext.faults.base import (
    FaultKind,
    FaultSpec,
    LookupFault,
    Outcome,
    Scope,
    Selection,
    Signal,
    SpecContext,
    Suspension,
    Target,
    TrafficFault,
)
from chaoslib_ext.spec.model import Experiment, ServiceSpec
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.trust import RunDirectory


class BuildContext(SpecContext, Protocol):
    """What a driver may read of the experiment while it is being built (spec/builder.py)."""

    services: dict[str, ServiceSpec]
    proxied: set[str]  # services callers reach through {proxied:SERVICE}
    target: Mapping[str, Any]  # the experiment's target section, as written

    def location(self, path: tuple[str | int, ...]) -> Location: ...


@dataclass(frozen=True)
class RunContext:
    """What a run gives its driver: where to write, what to tell, and where to record changes."""

    run_dir: RunDirectory
    timeline: Timeline
    ledger: Ledger


class Driver(ABC):
    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]]  # the fault kinds it carries out
    refused: ClassVar[dict[str, str]] = {}  # kinds it cannot carry out, and why (else: "not supported")
    undo_kinds: ClassVar[frozenset[str]]  # the undo forms (state/undo.py) its runs write to the ledger
    selection_properties: ClassVar[dict[Scope, dict[str, Any]]]  # the JSON Schema of how its faults select
    offline: ClassVar[bool]  # its targets are known from the file alone (validate checks the blast radius)

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment

    # --- the experiment file: no host, no network ---

    @staticmethod
    @abstractmethod
    def parse_selection(
        kind: type[FaultKind], spec: Mapping[str, Any], path: tuple[str | int, ...], context: BuildContext
    ) -> Selection | None:
        """The targets a fault names, in this driver's terms (None: it names none)."""

    @classmethod
    @abstractmethod
    def check_experiment(cls, experiment: Experiment, context: BuildContext) -> None:
        """Rules of this driver for the whole file, reported through `context.error`."""

    # --- the host and the targets: plan and run ---

    def preflight(self) -> list[SpecError]:
        """What this host lacks for the experiment (root, a tool, a kernel module)."""
        return []

    @abstractmethod
    def lock_key(self) -> str:
        """What one run at a time may act on (an address, an engine, a cluster namespace)."""

    @abstractmethod
    def candidates(self, fault: FaultSpec) -> tuple[str, ...]:
        """The names of the targets a fault may hit, as plan lists them (none: it names none)."""

    @abstractmethod
    def describe_targets(self, fault: FaultSpec, size: int, total: int) -> str:
        """Where the fault acts, to end plan's line: "on the traffic to 1 of 2 replica(s) of web"."""

    def unit(self, fault: FaultSpec) -> str:
        """What a share of traffic is decided on for this fault here: connections or packets."""
        return "connections"

    def group_name(self, fault: FaultSpec) -> str:
        """The targets of a fault as a group, for the blast radius."""
        assert fault.selection is not None
        return fault.selection.selector.describe()

    def downtime(self, fault: FaultSpec, rest_of_phase: float) -> float:
        """How long an instant fault's victims stay down, as far as a plan can know (0: its
        instant only, when their own restart policy decides)."""
        return 0.0

    def warnings(self, index: int, fault: FaultSpec, victims: tuple[str, ...]) -> tuple[str, ...]:
        """What plan can tell in advance about a fault that may test nothing (`victims`: whom it
        hits first, if all its candidates are up)."""
        return ()

    def setup_lines(self) -> list[str]:
        """What the driver sets up for a run, for plan (the services it starts, say)."""
        return ["Services (started by gameday):", "  none: the system under test is already running"]

    def host_warnings(self) -> list[str]:
        """What on this host may get in the way of a run (a port already taken, say)."""
        return []

    # --- a run ---

    @abstractmethod
    def start(self, run: RunContext) -> None:
        """Set up what the faults act through (and start the services, if the driver runs them)."""

    @abstractmethod
    def stop(self) -> None:
        """Take down what start set up; raise RunAborted naming what stays behind."""

    @classmethod
    def sweep(cls) -> tuple[list[str], list[str]]:
        """`gameday recover --<driver>`: what dead runs left where this driver can look without a
        ledger (a cluster, say); undone. Returns (undone, failed)."""
        return [], []

    def load_host(self, host: str) -> str:
        """The URL Locust is given for the experiment's load.host."""
        return host

    # --- what faults ask (faults.base.Actions); a kind the driver does not carry out never calls ---

    @abstractmethod
    def targets(self, selection: Selection, scope: Scope, where: str) -> Sequence[Target]: ...

    def traffic_to(self, target: Target) -> int | None:
        return None

    def kill(self, target: Target, signal: Signal) -> dict[str, Any]:
        raise self._unsupported("kill")

    def restart(self, target: Target) -> dict[str, Any]:
        raise self._unsupported("restart")

    def suspend(self, target: Target, how: Suspension, tag: str) -> dict[str, Any]:
        raise self._unsupported(how)

    def resume(self, tag: str) -> list[Outcome]:
        return []

    def impair(
        self, targets: Sequence[Target], impairment: TrafficFault, tag: str, seed: int
    ) -> list[Outcome]:
        raise self._unsupported(impairment.kind)

    def restore(self, tag: str) -> list[Outcome]:
        return []

    def add_dns_rule(
        self, targets: Sequence[Target] | None, rule: LookupFault, tag: str, seed: int
    ) -> list[Outcome]:
        raise self._unsupported(rule.kind)

    def remove_dns_rule(self, tag: str) -> list[Outcome]:
        return []

    def _unsupported(self, what: str) -> RunAborted:
        return RunAborted(f"the {self.name} driver cannot {what}")

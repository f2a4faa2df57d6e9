"""The experiment as frozen dataclasses: what the rest of gameday reads, never raw YAML."""

from __future__ import annotations

import fnmatch
import os
import re
import socket
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from chaoslib_ext.errors import Location
from chaoslib_ext.faults.base import FaultSpec
from chaoslib_ext.masking import Secrets
from chaoslib_ext.notify import Notification
from chaoslib_ext.units import format_duration, format_percent

PHASES = ("baseline", "fault", "recovery")
FRONT = re.compile(
    r"^(https?://)\{(proxied|endpoints):([a-z][a-z0-9-]*)\}(/.*)?$"
)  # load.host: gameday's front
FrontKind = Literal["proxied", "endpoints"]  # FRONT's second group
LATENCY_QUANTILES = {  # exact, so that a nearest rank ceil(q * n) is never off by one
    "p50": Fraction(1, 2),
    "p90": Fraction(9, 10),
    "p95": Fraction(95, 100),
    "p99": Fraction(99, 100),
    "p999": Fraction(999, 1000),
    "max": Fraction(1),
}


@dataclass(frozen=True)
class ReadyCheck:
    """How gameday knows a replica is up: at most one of url, tcp and command; with none, its
    port accepting connections (or, without a port, staying up for half a second)."""

    url: str | None
    timeout: float
    tcp: str | None = None  # a port, placeholders allowed ("{port}")
    command: tuple[str, ...] | None = None  # exits 0 when ready


@dataclass(frozen=True)
class RestartPolicy:
    policy: Literal["always", "on-failure", "never"]
    delay: float


@dataclass(frozen=True)
class ServiceSpec:
    """A process gameday starts for the run; replica i listens on port + i."""

    name: str
    command: tuple[str, ...]
    replicas: int
    port: int | None
    env: dict[str, str]
    ready: ReadyCheck
    restart: RestartPolicy
    where: Location
    isolation: Literal["none", "netns"] = "none"  # netns: each replica in a network namespace of its own
    port_variable: str | None = None  # the variable the port comes from, for a "--var" hint
    cwd: Path = Path(".")  # where its replicas run: by default the experiment file's folder
    resolver: Literal["system", "gameday"] = "system"  # gameday: its resolver is the run's DNS server (root)


@dataclass(frozen=True)
class WorkersSpec:
    """Locust workers that join gameday's master from elsewhere (`gameday worker`)."""

    expect: int  # the load starts once this many joined
    bind_host: str = "127.0.0.1"  # where the master listens for them
    bind_port: int = 5557  # Locust's own default
    join_timeout: float = 60.0  # seconds to wait for them before the run is refused
    max_clock_offset: float = 1.0  # seconds: a worker whose clock is further off the master's is refused

    @property
    def bind(self) -> str:
        return f"{self.bind_host}:{self.bind_port}"

    @property
    def master_address(self) -> str:
        """Where workers reach the master: the bind address, or this machine's name when it binds
        every interface."""
        host = socket.gethostname() if self.bind_host in ("0.0.0.0", "::", "*") else self.bind_host
        return f"{host}:{self.bind_port}"


@dataclass(frozen=True)
class LoadSpec:
    locustfile: Path
    host: str
    users: int
    spawn_rate: float
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    user_classes: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    request_timeout: float = 10.0  # seconds; a request that takes longer fails with a timeout
    arrival_rate: float | None = None  # open model: task runs per second, whatever answers take
    pacing: float | None = None  # open model: each user runs a task every this many seconds
    front: tuple[FrontKind, str] | None = None  # (how, service): the host is gameday's front
    processes: int | Literal["auto"] = "auto"  # Locust processes; more than 1: a master and its workers
    workers: WorkersSpec | None = None  # workers elsewhere; the master here runs no users itself
    on_worker_loss: Literal["abort", "continue"] = "abort"  # a worker lost mid-run takes its users' load

    def process_count(self) -> int:
        """Locust processes that generate load: `auto` is one per core this process may use; with
        workers elsewhere, the workers."""
        if self.workers is not None:
            return self.workers.expect
        return len(os.sched_getaffinity(0)) if self.processes == "auto" else self.processes

    @property
    def users_text(self) -> str:
        if self.arrival_rate is None:
            return f"{self.users} users"
        return (
            f"{self.arrival_rate:g} task runs/s (open model: {self.users} users, "
            f"each running a task every {self.pacing:g}s)"
        )


@dataclass(frozen=True)
class Objectives:
    """What must hold, overall or for one endpoint."""

    availability: float | None = None  # fraction of good requests, e.g. 0.995
    latency: dict[str, float] = field(default_factory=dict)  # p95, max... -> seconds
    throughput_min: float | None = None  # successful requests per second


@dataclass(frozen=True)
class SloSpec(Objectives):
    recovery_within: float | None = None  # seconds allowed to recover once the fault is over
    recovery_window: float = 5.0  # seconds the SLO must hold to count as recovered
    judge: tuple[str, ...] = PHASES
    endpoints: dict[str, Objectives] = field(default_factory=dict)  # "GET /checkout" -> objectives
    max_stall: float = 1.0  # seconds users may wait with no answer at all before it is a breach

    @property
    def latency_limits_us(self) -> tuple[int, ...]:
        """Every latency objective, in microseconds: the recorder counts exactly above each."""
        limits = [*self.latency.values()] + [s for o in self.endpoints.values() for s in o.latency.values()]
        return tuple(sorted({round(seconds * 1e6) for seconds in limits}))


@dataclass(frozen=True)
class HttpProbe:
    url: str
    method: str = "GET"
    status: int = 200
    body: str | None = None
    within: float | None = None
    timeout: float = 5.0
    kind: str = field(default="http", init=False)

    @property
    def name(self) -> str:
        return f"http {self.method} {self.url}"


@dataclass(frozen=True)
class ActivityProbe:
    """A chaostoolkit probe, run through chaostoolkit-lib."""

    activity: dict[str, Any]
    kind: str = field(default="activity", init=False)

    @property
    def name(self) -> str:
        return str(self.activity["name"])


Probe = HttpProbe | ActivityProbe


@dataclass(frozen=True)
class ErrorRateGuard:
    """Trip when more than `limit` (a share) of the requests finished in a second failed, for
    `seconds` bad seconds in a row."""

    limit: float
    seconds: int = 1

    def describe(self) -> str:
        return f"error rate above {format_percent(self.limit)} for {self.seconds}s"


@dataclass(frozen=True)
class LatencyGuard:
    """Trip when a second's `percentile` is over `limit` seconds, for `seconds` bad seconds in a row."""

    percentile: str  # p50 ... max
    limit: float
    seconds: int = 1

    def describe(self) -> str:
        return f"{self.percentile} latency above {format_duration(self.limit)} for {self.seconds}s"


@dataclass(frozen=True)
class ProbeGuard:
    """Trip when the probe fails `failures` times in a row, run every `every` seconds."""

    probe: Probe
    every: float = 1.0
    failures: int = 1

    def describe(self) -> str:
        times = "once" if self.failures == 1 else f"{self.failures} times in a row"
        return f"probe {self.probe.name} failing {times} (every {format_duration(self.every)})"


@dataclass(frozen=True)
class PrometheusGuard:
    """Trip when the query is over `limit` (under it, with `below`) for `seconds`, asked every `every`."""

    url: str  # Prometheus's base URL
    query: str  # PromQL
    limit: float
    below: bool = False
    seconds: int = 1
    every: float = 1.0

    def describe(self) -> str:
        side = "below" if self.below else "above"
        return f"prometheus {self.query} {side} {self.limit:g} for {self.seconds}s"


@dataclass(frozen=True)
class DeadlineGuard:
    """Trip when the run has lasted `limit` seconds from its start."""

    limit: float

    def describe(self) -> str:
        return f"deadline of {format_duration(self.limit)} from the start of the run"


Guard = ErrorRateGuard | LatencyGuard | ProbeGuard | PrometheusGuard | DeadlineGuard  # a stop condition


STARTUP_SECONDS = 15.0  # about what a run takes beyond its phases (services, load, steady state)


@dataclass(frozen=True)
class Phases:
    warmup: float
    baseline: float
    fault: float
    recovery: float

    @property
    def total(self) -> float:
        return self.warmup + self.baseline + self.fault + self.recovery


def label_texts(labels: dict[str, Any]) -> dict[str, str]:
    """Label values are text; an unquoted 8080 in YAML (or from --var) means "8080"."""
    return {key: str(value) for key, value in labels.items()}


@dataclass(frozen=True)
class BlastLimit:
    share: float  # the most of a group of targets that faults may hold at once
    where: Location | None  # target.max_share in the experiment file, for the error


@dataclass(frozen=True)
class Allowlist:
    """A container may be touched if it has all these labels, or its name matches one glob; a
    local service if it is listed (an empty list: every service)."""

    labels: dict[str, str]
    names: tuple[str, ...]
    services: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()  # kubernetes: the only namespaces faults may touch

    def admits(self, name: str, labels: dict[str, str]) -> bool:
        by_label = bool(self.labels) and all(labels.get(k) == v for k, v in self.labels.items())
        return by_label or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.names)


@dataclass(frozen=True)
class Experiment:
    path: Path
    sha256: str
    title: str
    description: str
    driver: str
    allow: Allowlist | None  # the services (local) or containers (docker) faults may touch
    blast_limit: BlastLimit | None  # target.max_share
    variables: dict[str, Any]
    secrets: Secrets  # their values, and the masking of outputs
    services: dict[str, ServiceSpec]
    load: LoadSpec
    slo: SloSpec
    steady_state: tuple[Probe, ...]
    guards: tuple[Guard, ...]
    phases: Phases
    faults: tuple[FaultSpec, ...]
    report_formats: tuple[str, ...]
    notify: tuple[Notification, ...] = ()  # webhooks told of the verdict
    proxied: tuple[str, ...] = ()  # services reached through gameday's fault proxies
    overrides: dict[str, Any] = field(default_factory=dict)  # what --var changed
    dns: bool = False  # whether gameday runs its DNS server for the services
    target_settings: dict[str, str] = field(default_factory=dict)  # the driver's: context, namespace

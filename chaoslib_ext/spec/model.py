"""The experiment as frozen dataclasses: what the rest of gameday reads, never raw YAML."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from chaoslib_ext.errors import Location
from chaoslib_ext.masking import Secrets

PHASES = ("baseline", "fault", "recovery")
FRONT = re.compile(
    r"^(https?://)\{(proxied|endpoints):([a-z][a-z0-9-]*)\}(/.*)?$"
)  # load.host: gameday's front
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
    policy: str  # always | on-failure | never
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
    isolation: str = "none"  # none | netns (each replica in a network namespace of its own)
    port_variable: str | None = None  # the variable the port comes from, for a "--var" hint
    cwd: Path = Path(".")  # where its replicas run: by default the experiment file's folder
    resolver: str = "system"  # or "gameday": its system resolver is the run's DNS server (root)


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
    front: tuple[str, str] | None = None  # ("proxied" | "endpoints", service): host is gameday's front

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
class Guard:
    """A stop condition: the run aborts, and reverts at once, when it trips."""

    kind: str  # error_rate | latency | probe | prometheus | deadline
    limit: float = 0.0  # error_rate: a share; latency and deadline: seconds; prometheus: a value
    percentile: str = ""  # latency: p50 ... max
    seconds: int = 1  # error_rate, latency: for how many whole seconds in a row
    probe: Probe | None = None
    every: float = 1.0  # probe: seconds between runs
    failures: int = 1  # probe: failures in a row that trip it
    url: str = ""  # prometheus: its base URL
    query: str = ""  # prometheus: PromQL
    below: bool = False  # prometheus: trip under the limit instead of over it


@dataclass(frozen=True)
class Phases:
    warmup: float
    baseline: float
    fault: float
    recovery: float

    @property
    def total(self) -> float:
        return self.warmup + self.baseline + self.fault + self.recovery


@dataclass(frozen=True)
class PodKill:
    service: str
    count: int | None
    percent: float | None
    signal: str
    interval: float | None


@dataclass(frozen=True)
class ContainerSelector:
    labels: dict[str, str]
    name: str | None  # a glob on the container name

    def describe(self) -> str:
        parts = [f"{key}={value}" for key, value in self.labels.items()]
        return " ".join(parts + ([f"name~{self.name}"] if self.name else []))


@dataclass(frozen=True)
class NetworkFault:
    """A fault on the traffic to a service, through the userspace proxies in front of its replicas."""

    service: str
    count: int | None  # replicas hit (default: all)
    percent: float | None
    direction: str  # upstream (to the service) | downstream (from it) | both
    delay: float = 0.0
    jitter: float = 0.0
    distribution: str = "uniform"
    probability: float = 1.0
    rate: float = 0.0  # bytes per second
    mode: str = "refuse"
    path: str = "userspace"  # resolved: userspace (the proxy) | kernel (iptables/tc in namespaces)
    selector: ContainerSelector | None = None  # docker driver: the containers instead of a service


@dataclass(frozen=True)
class DnsFault:
    patterns: tuple[str, ...]
    probability: float = 1.0
    rcode: str = "SERVFAIL"
    delay: float = 0.0
    addresses: tuple[str, ...] = ()
    selector: ContainerSelector | None = None  # docker driver: the containers whose lookups are hit
    count: int | None = None
    percent: float | None = None


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

    def admits(self, name: str, labels: dict[str, str]) -> bool:
        by_label = bool(self.labels) and all(labels.get(k) == v for k, v in self.labels.items())
        return by_label or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.names)


@dataclass(frozen=True)
class ContainerFault:
    """A fault on Docker containers: kill (a signal), stop or pause (for a duration), restart."""

    selector: ContainerSelector
    count: int | None
    percent: float | None
    signal: str = "SIGKILL"


@dataclass(frozen=True)
class FaultSpec:
    kind: str  # pod-kill, network-latency, ..., dns-spoof
    params: PodKill | NetworkFault | DnsFault | ContainerFault
    after: float  # offset into the fault phase
    duration: float | None  # None: until the end of the fault phase (pod-kill: instant)
    seed: int | None
    where: Location

    @property
    def family(self) -> str:
        """pod, network, dns or container."""
        return self.kind.split("-")[0]


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
    proxied: tuple[str, ...] = ()  # services reached through gameday's fault proxies
    overrides: dict[str, Any] = field(default_factory=dict)  # what --var changed
    dns: bool = False  # whether gameday runs its DNS server for the services

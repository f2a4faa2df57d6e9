"""Schema-valid data -> frozen dataclasses, plus the checks a JSON Schema cannot express."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chaoslib_ext.drivers import driver_class
from chaoslib_ext.errors import Location, SpecError
from chaoslib_ext.faults import KINDS, FaultSpec
from chaoslib_ext.masking import NO_SECRETS, Secrets
from chaoslib_ext.notify import notifications
from chaoslib_ext.spec.model import (
    FRONT,
    PHASES,
    ActivityProbe,
    Allowlist,
    BlastLimit,
    DeadlineGuard,
    ErrorRateGuard,
    Experiment,
    FrontKind,
    Guard,
    HttpProbe,
    LatencyGuard,
    LoadSpec,
    Objectives,
    Phases,
    Probe,
    ProbeGuard,
    PrometheusGuard,
    ReadyCheck,
    RestartPolicy,
    ServiceSpec,
    SloSpec,
    WorkersSpec,
    label_texts,
)
from chaoslib_ext.spec.schema import field_path
from chaoslib_ext.spec.source import Document
from chaoslib_ext.spec.variables import PLACEHOLDER
from chaoslib_ext.units import format_duration, parse_duration, parse_percent

if TYPE_CHECKING:
    from chaoslib_ext.drivers.base import Driver

SERVICE_PLACEHOLDER = re.compile(r"\{([a-z]+)(?::([a-z][a-z0-9-]*))?\}")
DEFAULT_WARMUP = "2s"  # after every user is spawned, before the baseline is measured
DEFAULT_READY_TIMEOUT = "15s"
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds, or 4 times the largest latency objective if longer
DEFAULT_RECOVERY_WINDOW = 5.0  # seconds, or the recovery phase if shorter
DEFAULT_MAX_STALL = 2.0  # seconds, without latency objectives (else the largest one, at least 1s)
MAX_USERS = 10_000
SERVICE_FIELDS = {"python", "port", "replica", "name", "host", "endpoints", "proxied", "hostnames", "dns"}
SERVICE_ARGUMENT_FIELDS = {"endpoints", "proxied", "hostnames"}  # these name another service
UNSUPPORTED_LOCUST_OPTIONS = {
    "--processes": "write load.processes: N (or auto, one per core) instead",
    "--master": "gameday runs the master: write load.processes: N, or load.workers: {expect: N}",
    "--worker": "write load.workers: {expect: N}, and start each with `gameday worker --master HOST:PORT`",
    "--master-host": "workers elsewhere: write load.workers: {expect: N, bind: HOST:PORT}",
    "--master-port": "workers elsewhere: write load.workers: {expect: N, bind: HOST:PORT}",
    "--master-bind-host": "workers elsewhere: write load.workers: {expect: N, bind: HOST:PORT}",
    "--master-bind-port": "workers elsewhere: write load.workers: {expect: N, bind: HOST:PORT}",
    "--expect-workers": "write load.processes: N, or load.workers: {expect: N}: gameday waits for them",
    "--expect-workers-max-wait": "write load.workers: {join_timeout: 2m}",
    "--autostart": "gameday runs one headless Locust and reads its recorder stream",
    "--web-port": "gameday runs one headless Locust and reads its recorder stream",
}


class Builder:
    """Turns schema-valid data into dataclasses and checks what a schema cannot express."""

    def __init__(self, document: Document, variables: dict[str, Any], secrets: Secrets = NO_SECRETS) -> None:
        self.document = document
        self.data: dict[str, Any] = document.data
        self.variables = variables
        self.secrets = secrets
        self.errors: list[SpecError] = []
        self.base = Path(document.file).resolve().parent
        self.proxied: set[str] = set()  # services that callers reach through {proxied:SERVICE}
        self.uses_dns = False  # some service resolves names through {dns}
        self.services: dict[str, ServiceSpec] = {}
        self.target: Mapping[str, Any] = self.data.get("target", {}) if isinstance(self.data, dict) else {}

    def error(self, path: tuple[str | int, ...], message: str, hint: str = "") -> None:
        message = f"{field_path(path)}: {message}"
        self.errors.append(SpecError(message, where=self.document.location(path), hint=hint))

    def location(self, path: tuple[str | int, ...]) -> Location:
        return self.document.location(path)

    def build(self) -> Experiment:
        data = self.data
        services = self.services = {
            name: self.service(name, spec) for name, spec in data.get("services", {}).items()
        }
        for name, service in services.items():
            if service.resolver == "gameday":
                self.uses_dns = True
                if service.isolation == "netns":
                    self.error(
                        ("services", name, "resolver"),
                        "resolver: gameday does not work with isolation: netns yet",
                        "drop one of them; with netns, give the service {dns} instead",
                    )
            self.check_program(name, service)
            self.check_placeholders(name, service, services)
        phases = self.phases(data["phases"])
        slo = self.slo(data["slo"], phases)
        load = self.load(data["load"], slo, services)
        driver = driver_class(data.get("target", {}).get("driver", "local"))
        faults = tuple(
            self.fault(index, item, driver, phases) for index, item in enumerate(data.get("faults", []))
        )
        guards = tuple(self.guard(i, item) for i, item in enumerate(data.get("guards", [])))
        planned = phases.warmup + sum(getattr(phases, name) for name in PHASES)
        for index, guard in enumerate(guards):
            if isinstance(guard, DeadlineGuard) and guard.limit <= planned:
                self.error(
                    ("guards", index, "deadline"),
                    f"deadline {format_duration(guard.limit)} is not longer than the phases "
                    f"({format_duration(planned)}), so every run would abort",
                    "a deadline bounds overruns: give it the phases plus the time to start and check",
                )
        for index, name in enumerate(data.get("safety_variables", [])):
            if name not in data.get("variables", {}):
                self.error(
                    ("safety_variables", index),
                    f"no variable {name!r} is declared",
                    "declare it under variables:",
                )
        experiment = Experiment(
            path=Path(self.document.file),
            sha256=self.document.sha256,
            title=data["title"],
            description=data.get("description", ""),
            driver=driver.name,
            target_settings={
                key: str(data["target"][key])
                for key in ("context", "namespace")
                if key in data.get("target", {})
            },
            allow=self.allowlist(data.get("target", {})),
            blast_limit=self.blast_limit(data.get("target", {})),
            variables=self.variables,
            secrets=self.secrets,
            services=services,
            load=load,
            slo=slo,
            steady_state=tuple(
                self.probe(("steady_state", i), item) for i, item in enumerate(data.get("steady_state", []))
            ),
            guards=guards,
            phases=phases,
            faults=faults,
            report_formats=tuple(data.get("report", {}).get("formats", ["json", "markdown", "junit"])),
            notify=notifications(data.get("notify", [])),
            proxied=tuple(sorted(self.proxied)),
            dns=self.uses_dns,
        )
        driver.check_experiment(experiment, self)
        return experiment

    def service(self, name: str, spec: dict[str, Any]) -> ServiceSpec:
        ready = spec.get("ready", {})
        restart = spec.get("restart", {})
        return ServiceSpec(
            name=name,
            command=tuple(spec["command"]),
            replicas=spec.get("replicas", 1),
            port=spec.get("port"),
            env={key: str(value) for key, value in spec.get("env", {}).items()},
            ready=ReadyCheck(
                ready.get("http"),
                parse_duration(ready.get("timeout", DEFAULT_READY_TIMEOUT)),
                tcp=str(ready["tcp"]) if "tcp" in ready else None,
                command=tuple(ready["command"]) if "command" in ready else None,
            ),
            restart=RestartPolicy(
                restart.get("policy", "always"), parse_duration(restart.get("delay", "1s"))
            ),
            where=self.document.location(("services", name), prefer_key=True),
            isolation=spec.get("isolation", "none"),
            port_variable=_whole_variable(self.document.templates.get(("services", name, "port"))),
            cwd=self.directory(("services", name, "cwd"), spec.get("cwd", ".")),
            resolver=spec.get("resolver", "system"),
        )

    def directory(self, path: tuple[str, ...], name: str) -> Path:
        """A directory, relative to the experiment file's folder; it must exist."""
        folder = (self.base / name).resolve()
        if not folder.is_dir():
            self.error(
                path, f"no such directory: {folder}", "cwd is relative to the experiment file's folder"
            )
        return folder

    def check_program(self, name: str, service: ServiceSpec) -> None:
        """A program given as a path must exist, relative to the service's working directory (one
        looked up on PATH is the driver's preflight: it depends on the host)."""
        program = service.command[0]
        if "{" in program or "/" not in program:
            return
        if not (service.cwd / program).is_file():
            self.error(
                ("services", name, "command", 0),
                f"program not found: {program}",
                "give a path or a program on PATH; {python} is the interpreter running gameday",
            )

    def check_placeholders(self, name: str, service: ServiceSpec, services: dict[str, ServiceSpec]) -> None:
        texts: list[tuple[tuple[str | int, ...], str]] = [
            (("services", name, "command", i), part) for i, part in enumerate(service.command)
        ]
        texts += [(("services", name, "env", key), value) for key, value in service.env.items()]
        if service.ready.url:
            texts.append((("services", name, "ready", "http"), service.ready.url))
        if service.ready.tcp:
            texts.append((("services", name, "ready", "tcp"), service.ready.tcp))
        for i, part in enumerate(service.ready.command or ()):
            texts.append((("services", name, "ready", "command", i), part))
        for path, text in texts:
            for field, argument in SERVICE_PLACEHOLDER.findall(text):
                if field not in SERVICE_FIELDS:
                    self.error(
                        path,
                        f"unknown placeholder {{{field}}}",
                        "known: {python} {port} {replica} {name} {dns} {endpoints:SERVICE} "
                        "{proxied:SERVICE} {hostnames:SERVICE}",
                    )
                elif field == "port" and service.port is None:
                    self.error(
                        path,
                        "{port} is used but the service declares no port",
                        f"add 'port:' under services.{name}",
                    )
                elif field == "dns":
                    self.uses_dns = True
                elif field in SERVICE_ARGUMENT_FIELDS:
                    other = services.get(argument)
                    if other is None:
                        self.error(
                            path,
                            f"{{{field}:{argument}}} names no declared service",
                            "known services: " + ", ".join(services),
                        )
                    elif other.port is None:
                        self.error(
                            path,
                            f"service {argument!r} has no port to list",
                            f"add 'port:' under services.{argument}",
                        )
                    elif field == "proxied":
                        self.proxied.add(argument)

    def load(self, spec: dict[str, Any], slo: SloSpec, services: dict[str, ServiceSpec]) -> LoadSpec:
        locustfile = self.find_file(spec["locustfile"], ("load", "locustfile"))
        self.check_python(locustfile)
        for i, option in enumerate(spec.get("options", [])):
            if option.split("=")[0] in UNSUPPORTED_LOCUST_OPTIONS:
                self.error(
                    ("load", "options", i),
                    f"Locust option {option} is not supported here",
                    UNSUPPORTED_LOCUST_OPTIONS[option.split("=")[0]],
                )
        front = self.front(spec["host"], services)
        try:
            parts = urlsplit(FRONT.sub(r"\g<1>127.0.0.1:1\g<4>", spec["host"]) if front else spec["host"])
            valid = parts.hostname is not None and parts.port != 0
        except ValueError:  # a port out of range, or not a number
            valid = False
        if not valid:
            placeholder = "{" in spec["host"] and not front
            self.error(
                ("load", "host"),
                "not a usable URL: it needs a host and a valid port"
                + (", and a placeholder may only stand for the whole host:port" if placeholder else ""),
                "e.g. http://127.0.0.1:8080, or http://{proxied:web} for a service gameday starts",
            )
        timeout = (
            parse_duration(spec["request_timeout"])
            if "request_timeout" in spec
            else max(DEFAULT_REQUEST_TIMEOUT, 4 * max(slo.latency_limits_us, default=0) / 1e6)
        )
        if timeout <= 0:
            self.error(("load", "request_timeout"), "a request timeout must be longer than 0s", "e.g. 10s")
            timeout = DEFAULT_REQUEST_TIMEOUT
        users, spawn_rate, pacing = spec.get("users", 1), spec.get("spawn_rate"), None
        rate = spec.get("arrival_rate")
        if rate is not None:  # open model: enough users that none is ever still busy when its turn comes
            users = math.ceil(rate * timeout)
            pacing, spawn_rate = users / rate, spawn_rate or rate
            if users > MAX_USERS:
                self.error(
                    ("load", "arrival_rate"),
                    f"{rate:g} task runs/s with a {format_duration(timeout)} request timeout needs {users} "
                    f"users, more than {MAX_USERS}",
                    "lower arrival_rate or load.request_timeout",
                )
        return LoadSpec(
            locustfile=locustfile,
            host=spec["host"],
            users=users,
            spawn_rate=float(spawn_rate or users),
            tags=tuple(spec.get("tags", ())),
            exclude_tags=tuple(spec.get("exclude_tags", ())),
            user_classes=tuple(spec.get("user_classes", ())),
            options=tuple(spec.get("options", ())),
            request_timeout=timeout,
            arrival_rate=rate,
            pacing=pacing,
            front=front,
            processes=spec.get("processes", "auto"),
            workers=self.workers(spec) if "workers" in spec else None,
            on_worker_loss=spec.get("on_worker_loss", "abort"),
        )

    def workers(self, spec: dict[str, Any]) -> WorkersSpec:
        workers = spec["workers"]
        if "processes" in spec:
            self.error(
                ("load", "processes"),
                "load.processes and load.workers do not go together: with workers, the master runs no users",
                "start a `gameday worker` for each process you want, and count them in workers.expect",
            )
        host, _, port = workers.get("bind", "127.0.0.1:5557").rpartition(":")
        if not 0 < int(port) < 65536:
            self.error(("load", "workers", "bind"), f"port {port} is out of range", "e.g. 0.0.0.0:5557")
        defaults = WorkersSpec(expect=1)
        return WorkersSpec(
            expect=workers["expect"],
            bind_host=host,
            bind_port=int(port),
            join_timeout=parse_duration(workers.get("join_timeout", defaults.join_timeout)),
            max_clock_offset=parse_duration(workers.get("max_clock_offset", defaults.max_clock_offset)),
        )

    def front(self, host: str, services: dict[str, ServiceSpec]) -> tuple[FrontKind, str] | None:
        """`http://{proxied:web}`: the load goes to gameday's front for a service it starts, which
        spreads new connections over the replicas (through their fault proxies, with proxied)."""
        match = FRONT.match(host)
        if match is None:
            return None
        field: FrontKind = "proxied" if match.group(2) == "proxied" else "endpoints"  # all FRONT admits
        service = match.group(3)
        if service not in services:
            self.error(
                ("load", "host"),
                f"{{{field}:{service}}} names no declared service",
                "known: " + ", ".join(services),
            )
        elif services[service].port is None:
            self.error(
                ("load", "host"),
                f"service {service!r} has no port to send load to",
                f"add 'port:' under services.{service}",
            )
        elif field == "proxied":
            self.proxied.add(service)
        return field, service

    def check_python(self, file: Path) -> None:
        """A locustfile that does not even compile is refused now, at its own line, not after the
        services have started."""
        if not file.is_file():
            return
        try:
            compile(file.read_bytes(), str(file), "exec")
        except SyntaxError as error:
            where = Location(str(file), error.lineno, error.offset)
            self.errors.append(
                SpecError(f"{error.msg} (the locustfile)", where=where, hint="fix the Python syntax")
            )
        except ValueError as error:  # NUL bytes
            self.errors.append(SpecError(f"not Python source: {error}", where=str(file)))

    def find_file(self, name: str, path: tuple[str, ...]) -> Path:
        """Relative paths are looked up next to the experiment file, then in the working directory."""
        candidates = [Path(name)] if Path(name).is_absolute() else [self.base / name, Path.cwd() / name]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        self.error(
            path,
            f"file not found: {name}",
            "paths are relative to the experiment file or the current directory",
        )
        return Path(name)

    def phases(self, spec: dict[str, Any]) -> Phases:
        return Phases(
            warmup=parse_duration(spec.get("warmup", DEFAULT_WARMUP)),
            baseline=parse_duration(spec["baseline"]),
            fault=parse_duration(spec["fault"]),
            recovery=parse_duration(spec["recovery"]),
        )

    def slo(self, spec: dict[str, Any], phases: Phases) -> SloSpec:
        recovery_within = spec.get("recovery_within")
        within = None if recovery_within is None else parse_duration(recovery_within)
        if "recovery_window" in spec:
            window = parse_duration(spec["recovery_window"])
            if window > phases.recovery:
                self.error(
                    ("slo", "recovery_window"),
                    f"recovery_window ({format_duration(window)}) is longer than the recovery phase "
                    f"({format_duration(phases.recovery)}), so recovery could never be seen",
                    "lengthen phases.recovery or shorten slo.recovery_window",
                )
        else:  # what fits after the allowance, up to the default
            window = max(1.0, min(DEFAULT_RECOVERY_WINDOW, phases.recovery - (within or 0.0)))
        if within is not None and within + window > phases.recovery:
            self.error(
                ("slo", "recovery_within"),
                f"recovery_within ({within:g}s) plus recovery_window ({window:g}s) does not fit "
                f"in the recovery phase ({phases.recovery:g}s)",
                "lengthen phases.recovery, or shorten recovery_within or recovery_window",
            )
        overall = self.objectives(spec)
        endpoints = {
            name: self.objectives(objectives) for name, objectives in spec.get("endpoints", {}).items()
        }
        largest = max(
            [*overall.latency.values(), *(s for o in endpoints.values() for s in o.latency.values())],
            default=None,
        )
        if "max_stall" in spec:
            max_stall = parse_duration(spec["max_stall"])
        else:
            max_stall = DEFAULT_MAX_STALL if largest is None else max(1.0, largest)
        return SloSpec(
            availability=overall.availability,
            latency=overall.latency,
            throughput_min=overall.throughput_min,
            recovery_within=within,
            recovery_window=window,
            judge=tuple(spec.get("judge", PHASES)),
            endpoints=endpoints,
            max_stall=max_stall,
        )

    @staticmethod
    def objectives(spec: dict[str, Any]) -> Objectives:
        return Objectives(
            availability=parse_percent(spec["availability"]) if "availability" in spec else None,
            latency={name: parse_duration(value) for name, value in spec.get("latency", {}).items()},
            throughput_min=spec.get("throughput", {}).get("min"),
        )

    def probe(self, path: tuple[str | int, ...], item: dict[str, Any]) -> Probe:
        kind, spec = next(iter(item.items()))
        if kind == "http":
            if "body" in spec:
                try:
                    re.compile(spec["body"])
                except re.error as error:
                    self.error(
                        (*path, "http", "body"),
                        f"invalid regular expression: {error}",
                        "escape special characters such as ( [ . with a backslash",
                    )
            return HttpProbe(
                url=spec["url"],
                method=spec.get("method", "GET"),
                status=spec.get("status", 200),
                body=spec.get("body"),
                within=parse_duration(spec["within"]) if "within" in spec else None,
                timeout=parse_duration(spec.get("timeout", "5s")),
            )
        return ActivityProbe(self.chaostoolkit_activity((*path, "activity"), spec))

    def guard(self, index: int, item: dict[str, Any]) -> Guard:
        kind, spec = next(iter(item.items()))
        if kind == "deadline":
            return DeadlineGuard(parse_duration(spec))
        window = parse_duration(spec.get("for", "1s"))
        if window != int(window) or window < 1:
            self.error(
                ("guards", index, "abort_if", "for"),
                f"for: {format_duration(window)} is not a whole number of seconds",
                "guards judge whole seconds of load: 1s, 2s, ...",
            )
        if "error_rate" in spec:
            return ErrorRateGuard(parse_percent(spec["error_rate"]), seconds=int(window))
        if "latency" in spec:
            [(percentile, bound)] = spec["latency"].items()
            return LatencyGuard(percentile, parse_duration(bound), seconds=int(window))
        if "prometheus" in spec:
            query = spec["prometheus"]
            return PrometheusGuard(
                url=query["url"],
                query=query["query"],
                limit=float(query.get("above", query.get("below", 0))),
                below="below" in query,
                seconds=int(window),
                every=parse_duration(spec.get("every", "1s")),
            )
        return ProbeGuard(
            self.probe(("guards", index, "abort_if", "probe"), spec["probe"]),
            every=parse_duration(spec.get("every", "1s")),
            failures=spec.get("failures", 1),
        )

    def chaostoolkit_activity(self, path: tuple[str | int, ...], activity: dict[str, Any]) -> dict[str, Any]:
        from chaoslib.activity import ensure_activity_is_valid
        from chaoslib.exceptions import ChaosException

        try:
            ensure_activity_is_valid(activity)
        except (ChaosException, ValueError, TypeError) as error:
            self.error(
                path,
                f"invalid chaostoolkit activity: {error}",
                "see https://chaostoolkit.org/reference/api/experiment/#probe",
            )
        return activity

    def fault(self, index: int, item: dict[str, Any], driver: type[Driver], phases: Phases) -> FaultSpec:
        name, spec = next(iter(item.items()))
        path = ("faults", index, name)
        kind = KINDS[name]
        if kind.kind not in driver.kinds:
            why = driver.refused.get(kind.kind)
            self.error(
                ("faults", index),
                f"{name} does not work with driver {driver.name}" + (f": {why}" if why else ""),
                f"driver {driver.name} takes: " + ", ".join(sorted(driver.kinds)),
            )
        params = kind.parse(spec, path, self)
        selection = driver.parse_selection(kind, spec, path, self)
        after = parse_duration(spec.get("after", 0))
        if after >= phases.fault:
            self.error(
                (*path, "after"),
                f"after ({after:g}s) is not inside the fault phase ({phases.fault:g}s)",
                "shorten 'after' or lengthen phases.fault",
            )
        duration = parse_duration(spec["duration"]) if "duration" in spec else None
        where = self.document.location(path, prefer_key=True)
        return FaultSpec(name, params, selection, after, duration, spec.get("seed"), where)

    def allowlist(self, target: dict[str, Any]) -> Allowlist | None:
        allow = target.get("allow")
        if allow is None:
            return None
        return Allowlist(
            label_texts(allow.get("labels", {})),
            tuple(allow.get("names", ())),
            tuple(allow.get("services", ())),
            tuple(allow.get("namespaces", ())),
        )

    def blast_limit(self, target: dict[str, Any]) -> BlastLimit | None:
        if "max_share" not in target:
            return None
        return BlastLimit(parse_percent(target["max_share"]), self.document.location(("target", "max_share")))


def _whole_variable(template: str | None) -> str | None:
    """The variable a value was given by, when it is exactly "${name}"."""
    match = PLACEHOLDER.fullmatch(template or "")
    return match.group(1) if match else None

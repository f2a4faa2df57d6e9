"""Local services: start the processes an experiment declares, keep them alive like a ReplicaSet.

Each replica runs in its own session (process group) so that a kill reaches all of its
processes. A monitor thread notices exits, restarts replicas per their restart policy after
the configured delay, and records every transition in the run's timeline.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.events import Timeline
from chaoslib_ext.launch import start_held
from chaoslib_ext.ports import port_holder, port_in_use
from chaoslib_ext.spec.model import ServiceSpec
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.trust import RunDirectory
from chaoslib_ext.state.undo import KillProcessGroup, process_start_ticks

LOOPBACK = "127.0.0.1"
POLL_SECONDS = 0.05
STOP_GRACE_SECONDS = 5.0
# With neither a ready URL nor a port, a replica counts as ready once it has stayed up this long.
UNCHECKED_READY_SECONDS = 0.5
COMMAND_READY_SECONDS = 5.0  # a ready command may take this long


def replica_port(service: ServiceSpec, index: int) -> int | None:
    return None if service.port is None else service.port + index


def render(text: str, service: ServiceSpec, index: int, shared: dict[str, str], host: str = LOOPBACK) -> str:
    """Fill {python} {port} {replica} {name} {host}, and the run-wide placeholders in `shared`
    ({endpoints:SERVICE}, {proxied:SERVICE}, {hostnames:SERVICE}, {dns}); spec validated them."""
    port = replica_port(service, index)
    text = text.replace("{python}", sys.executable).replace("{replica}", str(index)).replace("{host}", host)
    text = text.replace("{name}", f"{service.name}-{index}")
    if port is not None:
        text = text.replace("{port}", str(port))
    for key, value in shared.items():
        text = text.replace(f"{{{key}}}", value)
    return text


def endpoints(services: dict[str, ServiceSpec], hosts: dict[str, list[str]] | None = None) -> dict[str, str]:
    """{endpoints:SERVICE} for every service with a port: its replicas' host:port list (127.0.0.1,
    or the replica's namespace address)."""
    hosts = hosts or {}
    return {
        f"endpoints:{name}": ",".join(
            f"{hosts.get(name, [LOOPBACK] * s.replicas)[i]}:{replica_port(s, i)}" for i in range(s.replicas)
        )
        for name, s in services.items()
        if s.port is not None
    }


@dataclass(frozen=True)
class Readiness:
    """How one replica is checked: a URL, a command, or a TCP address (else its service's port)."""

    url: str | None = None
    command: tuple[str, ...] | None = None
    tcp: tuple[str, int] | None = None


@dataclass
class Replica:
    """One process of a service, possibly restarted several times."""

    service: ServiceSpec
    index: int
    command: list[str]
    env: dict[str, str]
    ready: Readiness
    logs: RunDirectory
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float | None = None
    spawned_at: float = 0.0
    awaiting_ready: bool = False
    log: IO[bytes] | None = field(default=None, repr=False)
    host: str = LOOPBACK  # the address it listens on

    @property
    def name(self) -> str:
        return f"{self.service.name}-{self.index}"

    @property
    def port(self) -> int | None:
        return replica_port(self.service, self.index)

    @property
    def log_path(self) -> Path:
        return self.logs.log_path(f"{self.name}.log")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self, record: Callable[[int], None]) -> int:
        """Start the replica in a new session; `record` gets its process group id (its pid)
        before the program runs. Returns the process group id."""
        if self.log is None:
            self.log = self.logs.create_log(f"{self.name}.log")
        try:
            self.process, release = start_held(
                self.command,
                cwd=self.service.cwd,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        except OSError as error:
            raise RunAborted(
                f"cannot start {self.name}: {error.strerror}: {self.command[0]}",
                where=str(self.service.where),
                hint=f"check services.{self.service.name}.command",
            ) from None
        try:
            record(self.process.pid)
        except BaseException:  # never let a group run that the ledger does not know
            _signal_group(self.process.pid, signal.SIGKILL)
            raise
        release()
        self.spawned_at = time.monotonic()
        return self.process.pid

    def last_log_line(self) -> str:
        lines = self.logs.read_log(f"{self.name}.log").strip().splitlines()
        return lines[-1][:200] if lines else ""


def probe_ready(replica: Replica, timeout: float = 0.5) -> tuple[bool, str]:
    """One readiness attempt, and what it saw: the ready URL answers 2xx, the ready command exits
    0, or the TCP port (ready.tcp, else the service's port) accepts a connection."""
    ready = replica.ready
    if ready.url:
        return _http_ready(ready.url, timeout)
    if ready.command:
        return _command_ready(ready.command, max(timeout, COMMAND_READY_SECONDS), replica.env)
    address = ready.tcp or ((replica.host, replica.port) if replica.port is not None else None)
    if address is not None:
        return _tcp_ready(address, timeout)
    settled = replica.alive() and time.monotonic() - replica.spawned_at >= UNCHECKED_READY_SECONDS
    return settled, "running" if settled else "just started"


def _http_ready(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300, f"HTTP {response.status} from {url}"
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code} from {url}"
    except urllib.error.URLError as error:
        return False, f"{_connect_problem(error.reason)} at {url}"
    except (http.client.HTTPException, OSError) as error:  # a self-connection echoes the request back
        return False, f"{_connect_problem(error)} at {url}"


def _tcp_ready(address: tuple[str, int], timeout: float) -> tuple[bool, str]:
    """A connect to a port nobody listens on yet, in the ephemeral range, can be a TCP
    self-connection (the kernel picks that very port as the source): that is no listener."""
    where = f"{address[0]}:{address[1]}"
    try:
        with socket.create_connection(address, timeout=timeout) as connection:
            if connection.getsockname() == connection.getpeername():
                return False, f"nothing listens on {where}"
            return True, f"{where} accepts connections"
    except OSError as error:
        return False, f"{_connect_problem(error)} at {where}"


def _command_ready(command: tuple[str, ...], timeout: float, env: dict[str, str]) -> tuple[bool, str]:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
        )
    except subprocess.TimeoutExpired:
        return False, f"{command[0]} did not finish within {timeout:g}s"
    except OSError as error:
        return False, f"{command[0]}: {error.strerror}"
    said = (result.stderr or result.stdout).strip().splitlines()
    return result.returncode == 0, f"{command[0]} exited {result.returncode}" + (
        f": {said[-1][:120]}" if said else ""
    )


def _connect_problem(error: object) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError | socket.timeout):
        return "no answer in time"
    if isinstance(error, http.client.HTTPException):
        return "no HTTP answer"
    return str(getattr(error, "strerror", None) or error)


class ServiceSupervisor:
    """Starts, watches, restarts and finally stops every replica of every declared service."""

    def __init__(
        self,
        services: dict[str, ServiceSpec],
        logs: RunDirectory,
        timeline: Timeline,
        shared: dict[str, str] | None = None,
        placement: dict[str, list[tuple[str, list[str]]]] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """`placement` gives, per service and replica, the address it listens on and a command prefix
        (`ip netns exec NAME` for a replica in a namespace); `ledger` records every process group, so
        that `gameday recover` can stop services a killed run left running."""
        shared = endpoints(services) if shared is None else shared
        placement = placement or {}
        self.ledger = ledger
        self._ledger_entries: dict[int, int] = {}
        self.services = services
        self.timeline = timeline
        self.replicas: dict[str, list[Replica]] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._groups: set[int] = set()  # process groups not yet cleared, so that none outlives the run
        self._killed: set[int] = set()  # replicas a fault killed: their exit is not a crash
        for name, service in services.items():
            places = placement.get(name, [(LOOPBACK, [])] * service.replicas)
            self.replicas[name] = []
            for i, (host, prefix) in enumerate(places):
                self.replicas[name].append(
                    Replica(
                        service=service,
                        index=i,
                        command=[
                            *prefix,
                            *(render(part, service, i, shared, host) for part in service.command),
                        ],
                        env={k: render(v, service, i, shared, host) for k, v in service.env.items()},
                        ready=_readiness(service, i, shared, host),
                        logs=logs,
                        host=host,
                    )
                )

    def all_replicas(self) -> list[Replica]:
        return [replica for replicas in self.replicas.values() for replica in replicas]

    def start(self) -> None:
        """Start services in declaration order, each fully ready before the next one starts."""
        for replica in self.all_replicas():
            if replica.port is not None and replica.host == LOOPBACK and port_in_use(replica.port):
                service = replica.service
                move = (
                    f"--var {service.port_variable}=<another port>"
                    if service.port_variable
                    else f"another services.{service.name}.port"
                )
                holder = port_holder(replica.port)
                raise RunAborted(
                    f"port {replica.port} for {replica.name} is already in use by {holder}",
                    where=str(service.where),
                    hint=f"stop it, or choose {move}",
                )
        for name, replicas in self.replicas.items():
            for replica in replicas:
                self._spawn(replica)
                self.timeline.add("service", "started", replica.name, pid=replica.pid, port=replica.port)
            self._wait_ready(name, replicas)
        self._monitor = threading.Thread(target=self._watch, name="service-monitor", daemon=True)
        self._monitor.start()

    def _wait_ready(self, name: str, replicas: list[Replica]) -> None:
        deadline = time.monotonic() + self.services[name].ready.timeout
        waiting = list(replicas)
        seen: dict[str, str] = {}  # what each replica's last check saw
        while waiting:
            for replica in list(waiting):
                if not replica.alive():
                    code = replica.process.returncode if replica.process else None
                    raise RunAborted(
                        f"service {replica.name} exited with code {code} before it was ready: "
                        f"{replica.last_log_line() or 'no output'}",
                        where=str(replica.service.where),
                        hint=f"see {replica.log_path}",
                    )
                ready, seen[replica.name] = probe_ready(replica)
                if ready:
                    waiting.remove(replica)
                    self.timeline.add("service", "ready", replica.name)
            if waiting and time.monotonic() > deadline:
                last = "; ".join(f"{r.name}: {seen[r.name]}" for r in waiting)
                raise RunAborted(
                    f"service {name} not ready after {self.services[name].ready.timeout:g}s: {last}",
                    where=str(self.services[name].where),
                    hint=f"see {waiting[0].log_path}, check services.{name}.ready or raise ready.timeout",
                )
            if waiting:
                time.sleep(POLL_SECONDS * 2)

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            with self._lock:
                for replica in self.all_replicas():
                    try:
                        self._tend(replica)
                    except Exception as error:  # one replica's trouble must not stop the watch
                        self.timeline.add("service", "supervision-failed", replica.name, error=repr(error))
                        replica.restart_at = None

    def _tend(self, replica: Replica) -> None:
        now = time.monotonic()
        process = replica.process
        if process is not None and replica.restart_at is None and process.poll() is not None:
            code = process.returncode
            self.timeline.add(
                "service",
                "exited",
                replica.name,
                pid=process.pid,
                code=code,
                signal=_signal_name(-code) if code < 0 else None,
                by="fault" if process.pid in self._killed else "itself",
            )
            _signal_group(process.pid, signal.SIGKILL)  # like a pod: what the leader started goes too
            self._untrack(process.pid)
            policy = replica.service.restart.policy
            if policy == "always" or (policy == "on-failure" and code != 0):
                replica.restart_at = now + replica.service.restart.delay
            else:
                replica.process = None
        if replica.restart_at is not None and now >= replica.restart_at and not self._stopping.is_set():
            replica.restart_at = None
            replica.restarts += 1
            self._spawn(replica)
            replica.awaiting_ready = True
            self.timeline.add(
                "service", "restarted", replica.name, pid=replica.pid, restarts=replica.restarts
            )
        if replica.awaiting_ready and replica.alive() and probe_ready(replica, timeout=0.2)[0]:
            replica.awaiting_ready = False
            self.timeline.add("service", "ready", replica.name)

    def _spawn(self, replica: Replica) -> None:
        replica.spawn(record=lambda pgid: self._track(pgid, replica))

    def _track(self, pgid: int, replica: Replica) -> None:
        """Remember a replica's process group (in the ledger too) before its program runs."""
        self._groups.add(pgid)
        if self.ledger is not None:
            ticks = process_start_ticks(pgid)
            assert ticks is not None, "the held child cannot have exited: it waits for us"
            undo = KillProcessGroup(pgid, ticks)
            self._ledger_entries[pgid] = self.ledger.record(f"process group of {replica.name}", undo)

    def _untrack(self, pgid: int) -> None:
        self._groups.discard(pgid)
        entry = self._ledger_entries.pop(pgid, None)
        if entry is not None and self.ledger is not None:
            self.ledger.done(entry)

    def live(self, service: str) -> list[Replica]:
        with self._lock:
            return [
                r
                for r in self.replicas[service]
                if r.alive() and r.restart_at is None and not r.awaiting_ready
            ]

    def kill(self, replica: Replica, signal_name: str) -> int:
        """Send the signal to the replica's whole process group; return the pid it hit."""
        with self._lock:
            if not replica.alive() or replica.pid is None:
                raise RunAborted(f"{replica.name} is not running")
            pid = replica.pid
            self._killed.add(pid)
            os.killpg(pid, signal.Signals[signal_name])
            return pid

    def stop(self) -> None:
        """Stop everything, whatever state it is in: SIGTERM to every process group ever started,
        SIGKILL to what is left after a grace period."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        running = [r for r in self.all_replicas() if r.alive()]
        for pgid in self._groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for replica in running:
            assert replica.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                replica.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pgid in self._groups:
            _signal_group(pgid, signal.SIGKILL)
        for replica in running:
            assert replica.process is not None
            replica.process.wait()
        for pgid in list(self._groups):
            self._untrack(pgid)
        for replica in self.all_replicas():
            if replica.log is not None:
                replica.log.close()
                replica.log = None
        if running:
            self.timeline.add("service", "stopped", ",".join(r.name for r in running))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _readiness(service: ServiceSpec, index: int, shared: dict[str, str], host: str) -> Readiness:
    ready = service.ready
    if ready.url:
        return Readiness(url=render(ready.url, service, index, shared, host))
    if ready.command:
        return Readiness(command=tuple(render(part, service, index, shared, host) for part in ready.command))
    if ready.tcp:
        port = int(render(ready.tcp, service, index, shared, host))
        return Readiness(tcp=(host, port))
    return Readiness()

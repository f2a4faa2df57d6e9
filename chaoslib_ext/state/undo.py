"""Undo actions: the exact forms of change gameday makes outside its own process, and how to take
each one back. A run writes them to its ledger before it acts; `gameday recover` (often as root)
reads them back, and acts only on a line that parses into one of these forms for that very run:
anything else, a planted line say, is reported as "cannot undo" and never run.

Each action decides whether its change is already gone by a real check (the namespace file, the
interface, `iptables -C`, `docker inspect`), never by reading an error message, and runs its
tools from a fixed, root-owned PATH, so a cron job's PATH or another DOCKER_HOST cannot turn a
failure into "already undone".
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chaoslib_ext.errors import RunAborted

SAFE_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
COMMAND_TIMEOUT_SECONDS = 30

NAMESPACE_NAME = re.compile(r"gd-[0-9a-f]{4}-[a-z][a-z0-9-]{0,40}-\d{1,4}")  # NamespaceFactory's names
VETH_NAME = re.compile(r"gd[0-9a-f]{4}\d{3}[hn]")
DOCKER_VETH = re.compile(r"veth[0-9a-f]{7}")  # the host end of a container's veth pair
SANDBOX_KEY = re.compile(r"/(?:var/)?run/docker/netns/[0-9a-f]{12}")  # a container's network namespace
CHAINS = {"filter": {"INPUT", "OUTPUT", "FORWARD"}, "nat": {"OUTPUT", "PREROUTING", "POSTROUTING"}}
RULE_TOKEN = re.compile(r"[A-Za-z0-9_.:/!%+-]{1,80}")
COMMAND_OPTIONS = {"-A", "-C", "-D", "-E", "-F", "-I", "-L", "-N", "-P", "-R", "-S", "-X", "-Z", "-t"}


KERNEL_KINDS = {"netns", "link", "iptables", "qdisc", "conntrack-dns"}  # a run as root's only


class Refused(ValueError):
    """A ledger line that is not an undo gameday writes: it is never carried out."""


FORMS: dict[str, Callable[[dict[str, Any], str], UndoAction]] = {}  # a driver's own undo forms, by kind


def undo_form(
    kind: str,
) -> Callable[[Callable[[dict[str, Any], str], UndoAction]], Callable[[dict[str, Any], str], UndoAction]]:
    """Register how a driver's ledger lines of `kind` are read back: the reader returns the undo,
    or raises Refused for a line that is not exactly a form the driver writes. Lines of these
    kinds are read only from the recovering user's own ledgers, or root's."""

    def register(
        reader: Callable[[dict[str, Any], str], UndoAction],
    ) -> Callable[[dict[str, Any], str], UndoAction]:
        FORMS[kind] = reader
        return reader

    return register


def tool(name: str) -> str:
    """The absolute path of a system tool, from SAFE_PATH only."""
    for directory in SAFE_PATH:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    raise RunAborted(f"{name} not found in {':'.join(SAFE_PATH)}", hint=f"install {name}")


def run_tool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run argv (argv[0] a tool name, resolved in SAFE_PATH), with a bounded wait."""
    return subprocess.run(
        [tool(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS
    )


class UndoAction(Protocol):
    def to_data(self) -> dict[str, Any]: ...

    def perform(self) -> str | None:
        """Take the change back: None when done or already gone, else what went wrong."""


@dataclass(frozen=True)
class Place:
    """Where a command runs: the host, a network namespace a run made (by name), or a container's
    network namespace (by its sandbox key, which names one start of the container)."""

    netns: str | None = None
    sandbox: str | None = None

    def prefix(self) -> list[str]:
        if self.netns:
            return [tool("ip"), "netns", "exec", self.netns]
        if self.sandbox:
            return [tool("nsenter"), f"--net={self.sandbox}"]
        return []

    def gone(self) -> bool:
        """The namespace no longer exists, so nothing inside it is left either."""
        if self.netns:
            return not Path("/run/netns", self.netns).exists()
        if self.sandbox:
            return not is_namespace_mount(self.sandbox)
        return False

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix(), tool(argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )

    def to_data(self) -> dict[str, str]:
        return {"netns": self.netns} if self.netns else {"sandbox": self.sandbox} if self.sandbox else {}

    @classmethod
    def parse(cls, data: Any) -> Place:
        if data == {}:
            return cls()
        if isinstance(data, dict) and list(data) == ["netns"] and matches(NAMESPACE_NAME, data["netns"]):
            return cls(netns=data["netns"])
        if isinstance(data, dict) and list(data) == ["sandbox"] and matches(SANDBOX_KEY, data["sandbox"]):
            return cls(sandbox=data["sandbox"])
        raise Refused(f"not a place gameday acts in: {data!r}")


def _problem(result: subprocess.CompletedProcess[str]) -> str | None:
    if result.returncode == 0:
        return None
    said = (result.stderr or result.stdout).strip()[:200]
    return f"{' '.join(result.args)}: {said} (exit {result.returncode})"


def matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


@dataclass(frozen=True)
class DeleteNamespace:
    name: str

    def to_data(self) -> dict[str, Any]:
        return {"kind": "netns", "name": self.name}

    def perform(self) -> str | None:
        if Place(netns=self.name).gone():
            return None
        return _problem(run_tool(["ip", "netns", "del", self.name]))


@dataclass(frozen=True)
class DeleteLink:
    name: str

    def to_data(self) -> dict[str, Any]:
        return {"kind": "link", "name": self.name}

    def perform(self) -> str | None:
        if not Path("/sys/class/net", self.name).exists():
            return None
        return _problem(run_tool(["ip", "link", "del", self.name]))


@dataclass(frozen=True)
class DeleteRule:
    """An iptables rule gameday inserted (its comment names the run), in some place."""

    place: Place
    table: str
    rule: tuple[str, ...]  # the chain, then the match and target, as given to -I

    def to_data(self) -> dict[str, Any]:
        return {"kind": "iptables", "in": self.place.to_data(), "table": self.table, "rule": list(self.rule)}

    def add_argv(self) -> list[str]:
        return ["iptables", "-t", self.table, "-I", *self.rule]

    def perform(self) -> str | None:
        if self.place.gone():
            return None
        check = self.place.run(["iptables", "-t", self.table, "-C", *self.rule])
        if check.returncode == 1:  # iptables -C: no such rule
            return None
        if check.returncode != 0:
            return _problem(check)
        return _problem(self.place.run(["iptables", "-t", self.table, "-D", *self.rule]))


@dataclass(frozen=True)
class DeleteQdisc:
    """The root qdisc gameday added on a device, in some place."""

    place: Place
    device: str

    def to_data(self) -> dict[str, Any]:
        return {"kind": "qdisc", "in": self.place.to_data(), "device": self.device}

    def perform(self) -> str | None:
        if self.place.gone():
            return None
        shown = self.place.run(["tc", "qdisc", "show", "dev", self.device, "root"])
        if shown.returncode != 0 and "Cannot find device" in shown.stderr:
            return None  # the device went with its namespace or its container
        if shown.returncode == 0 and not re.search(r"qdisc (tbf|netem) ", shown.stdout):
            return None  # only the kernel's default qdisc is left
        return _problem(self.place.run(["tc", "qdisc", "del", "dev", self.device, "root"]))


@dataclass(frozen=True)
class ForgetDnsFlows:
    """conntrack's UDP/53 flows in a container's namespace (so that a redirect applies, or stops)."""

    place: Place

    def to_data(self) -> dict[str, Any]:
        return {"kind": "conntrack-dns", "in": self.place.to_data()}

    def perform(self) -> str | None:
        if self.place.gone():
            return None
        result = self.place.run(["conntrack", "-D", "-p", "udp", "--dport", "53"])
        if result.returncode == 1 and "0 flow entries have been deleted" in result.stderr:
            return None  # conntrack -D exits 1 when there was nothing to forget
        return _problem(result)


@dataclass(frozen=True)
class KillProcessGroup:
    """A process group gameday started (a service replica, Locust), identified by its leader's start
    time so that a recycled pid is never hit, and owned by the user whose run started it."""

    pgid: int
    start_ticks: int
    uid: int | None = None  # the ledger's owner: gameday's processes run as the user that ran it

    def to_data(self) -> dict[str, Any]:
        return {"kind": "process-group", "pgid": self.pgid, "start_ticks": self.start_ticks}

    def perform(self) -> str | None:
        if self.pgid == os.getpgrp():
            return f"process group {self.pgid} is the one running recover"
        if process_start_ticks(self.pgid) != self.start_ticks:
            return None  # exited, or the pid was recycled: that is somebody else's process now
        if self.uid is not None and process_uid(self.pgid) != self.uid:
            return f"process group {self.pgid} belongs to another user than the run's"
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        except PermissionError as error:
            return f"process group {self.pgid}: {error}"
        return None


def is_namespace_mount(path: str) -> bool:
    """Whether a container's sandbox key still holds its network namespace: dockerd leaves the file
    behind, empty, when the container stops or restarts, and only the namespace's mount (nsfs) on
    it says it is alive."""
    target = os.path.realpath(path)
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return Path(target).exists()
    for line in mounts:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) > 4 and parts[4] == target and rest.split()[:1] == ["nsfs"]:
            return True
    return False


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_uid(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("Uid:")), "Uid: -1")
    return int(line.split()[1])


def parse(data: Any, run_id: str, owner: int | None = None) -> UndoAction:
    """The undo a ledger line of run `run_id` (a file owned by `owner`) holds, if it is exactly a
    form gameday writes."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise Refused("not an undo action")
    kind, fields = data["kind"], set(data) - {"kind"}
    if kind in KERNEL_KINDS and owner not in (None, 0):
        raise Refused(f"a {kind} change in a ledger of uid {owner}: only a run as root makes one")
    if kind in FORMS:
        if owner not in (None, 0, os.geteuid()):
            raise Refused(f"a {kind} change in a ledger of uid {owner}: theirs to recover, not ours")
        return FORMS[kind](data, run_id)
    if kind == "netns" and fields == {"name"} and matches(NAMESPACE_NAME, data["name"]):
        return DeleteNamespace(data["name"])
    if kind == "link" and fields == {"name"} and matches(VETH_NAME, data["name"]):
        return DeleteLink(data["name"])
    if kind == "iptables" and fields == {"in", "table", "rule"}:
        return DeleteRule(Place.parse(data["in"]), *_rule(data["table"], data["rule"], run_id))
    if kind == "qdisc" and fields == {"in", "device"}:
        place, device = Place.parse(data["in"]), data["device"]
        ours = matches(VETH_NAME, device)  # a namespace this run made, either end
        container = (place.sandbox and device == "eth0") or (
            place == Place() and matches(DOCKER_VETH, device)
        )
        if ours or container:
            return DeleteQdisc(place, device)
    if kind == "conntrack-dns" and fields == {"in"} and Place.parse(data["in"]).sandbox:
        return ForgetDnsFlows(Place.parse(data["in"]))
    if kind == "process-group" and fields == {"pgid", "start_ticks"}:
        pgid, ticks = data["pgid"], data["start_ticks"]
        if type(pgid) is int and type(ticks) is int and pgid > 1 and ticks > 0:
            return KillProcessGroup(pgid, ticks, owner)
    raise Refused(f"not an undo gameday writes: {str(data)[:160]}")


def _rule(table: Any, rule: Any, run_id: str) -> tuple[str, tuple[str, ...]]:
    """An iptables rule gameday writes: a known chain, plain tokens, no command option, and the
    comment that names this run."""
    if table not in CHAINS or not isinstance(rule, list) or not rule or rule[0] not in CHAINS[table]:
        raise Refused("not an iptables rule gameday writes")
    tokens = rule[1:]
    if not all(matches(RULE_TOKEN, token) for token in tokens) or COMMAND_OPTIONS & set(tokens):
        raise Refused("not an iptables rule gameday writes")
    comment = next((tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "--comment"), "")
    if not comment.startswith(f"gameday:{run_id}:"):
        raise Refused("an iptables rule whose comment does not name its run")
    return table, tuple(rule)

"""The undo ledger: every change a run makes outside its own process is written down (and fsync'd)
*before* it is made, so that `gameday recover` can take it back after the run died, even by SIGKILL.

A ledger is one JSON-lines file per run in the state directory: a header naming the run and its
pid, then `{"id": n, "undo": {...}, "what": "..."}` entries and `{"done": n}` marks. Undo actions are
data, not code: a command to run, or a process group to kill (checked against its start time, so
that a recycled pid is never hit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALREADY_GONE = (
    "No such file",
    "does not exist",
    "Cannot find device",
    "No chain/target/match",
    "Bad rule",
    "No such container",
    "is not paused",
    "Cannot delete qdisc with handle of zero",
    "Cannot open network namespace",
    "reassociate to namespace",  # nsenter: the path no longer names a namespace (its container restarted)
    "0 flow entries have been deleted",  # conntrack -D: no flow to forget
)


def state_dir() -> Path:
    """Where ledgers live: $GAMEDAY_STATE_DIR, else $XDG_STATE_HOME/gameday (~/.local/state/gameday)."""
    if "GAMEDAY_STATE_DIR" in os.environ:
        return Path(os.environ["GAMEDAY_STATE_DIR"])
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "gameday"


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class Ledger:
    path: Path
    run_id: str
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    _next: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # engine and monitor threads

    @classmethod
    def create(cls, run_id: str, directory: Path | None = None) -> Ledger:
        directory = directory or state_dir()
        directory.mkdir(parents=True, exist_ok=True)
        ledger = cls(directory / f"{run_id}.ledger", run_id)
        ledger.path.touch(exist_ok=False)  # a run id is never shared: two runs never mix their entries
        ledger._append(
            {
                "run": run_id,
                "pid": os.getpid(),
                "start_ticks": process_start_ticks(os.getpid()),
                "created": time.time(),
            }
        )
        return ledger

    def record(self, what: str, undo: dict[str, Any]) -> int:
        """Write down how to undo what is about to be done; returns the entry id for `done`."""
        with self._lock:
            entry_id = self._next
            self._next += 1
            self.pending[entry_id] = {"id": entry_id, "what": what, "undo": undo}
            self._append(self.pending[entry_id])
        return entry_id

    def done(self, entry_id: int) -> None:
        with self._lock:
            if self.pending.pop(entry_id, None) is not None:
                self._append({"done": entry_id})

    def close(self) -> None:
        """Remove the ledger if nothing is left to undo (otherwise `gameday recover` needs it)."""
        if not self.pending:
            self.path.unlink(missing_ok=True)

    def _append(self, entry: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry) + "\n")
            stream.flush()
            os.fsync(stream.fileno())


def undo(action: dict[str, Any]) -> str | None:
    """Carry out one undo action; None when done (or already gone), else what went wrong."""
    if action["kind"] == "command":
        try:
            result = subprocess.run(action["argv"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{' '.join(action['argv'])}: {error}"
        if result.returncode == 0 or any(text in result.stderr for text in ALREADY_GONE):
            return None
        return f"{' '.join(action['argv'])}: {result.stderr.strip()[:200]}"
    if action["kind"] == "process-group":
        pgid, ticks = action["pgid"], action["start_ticks"]
        if process_start_ticks(pgid) not in (ticks, None):
            return None  # the pid was recycled: that is somebody else's process now
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        except PermissionError as error:
            return f"process group {pgid}: {error}"
        return None
    return f"unknown undo kind {action['kind']!r}"


@dataclass(frozen=True)
class LedgerState:
    path: Path
    run_id: str
    pid: int
    alive: bool
    pending: list[dict[str, Any]]


def read_ledger(path: Path) -> LedgerState:
    header: dict[str, Any] = {}
    entries: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a torn last line from a crash: what it would have said was never acted on
        if "run" in item:
            header = item
        elif "done" in item:
            entries.pop(item["done"], None)
        elif "id" in item:
            entries[item["id"]] = item
    pid = int(header.get("pid", 0))
    alive = pid > 0 and process_start_ticks(pid) == header.get("start_ticks")
    return LedgerState(path, str(header.get("run", path.stem)), pid, alive, list(entries.values()))


def ledgers(directory: Path | None = None) -> list[LedgerState]:
    directory = directory or state_dir()
    if not directory.is_dir():
        return []
    return [read_ledger(path) for path in sorted(directory.glob("*.ledger"))]


def recover(directory: Path | None = None) -> tuple[list[str], list[str]]:
    """Undo what dead runs left behind, newest change first. Returns (done, failed) descriptions.
    Idempotent: what is already gone counts as done."""
    done, failed = [], []
    for state in ledgers(directory):
        if state.alive:
            continue
        problems = []
        for entry in reversed(state.pending):
            problem = undo(entry["undo"])
            if problem is None:
                done.append(f"{state.run_id}: {entry['what']}")
            else:
                problems.append(problem)
                failed.append(f"{state.run_id}: {entry['what']}: {problem}")
        if not problems:
            state.path.unlink(missing_ok=True)
    return done, failed

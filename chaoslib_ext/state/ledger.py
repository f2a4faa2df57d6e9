"""The undo ledger: every change a run makes outside its own process is written down (and fsync'd)
*before* it is made, so that `gameday recover` can take it back after the run died, even by SIGKILL.

A ledger is one JSON-lines file per run in the state directory: a header naming the run and its
pid, then `{"id": n, "undo": {...}, "what": "..."}` entries and `{"done": n}` marks. Undo actions are
data in the exact forms of undo.py, never code; `recover` acts only on those forms, and only on
ledgers it can trust (trust.py): its own user's (or, as root, what another user's run could itself
have done), opened without following symlinks.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslib_ext.state import undo as undo_forms
from chaoslib_ext.state.trust import (
    PRIVATE,
    SHARED,
    Untrusted,
    create_file,
    open_directory,
    read_regular,
    shared_group,
)
from chaoslib_ext.state.undo import UndoAction, process_start_ticks

SUFFIX = ".ledger"


def state_dir() -> Path:
    """Where ledgers live: $GAMEDAY_STATE_DIR, else $XDG_STATE_HOME/gameday (~/.local/state/gameday)."""
    if "GAMEDAY_STATE_DIR" in os.environ:
        return Path(os.environ["GAMEDAY_STATE_DIR"])
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "gameday"


def open_state_dir(directory: Path | None = None) -> int:
    """The state directory, held open: private to this user (0700), or shared with the group
    GAMEDAY_STATE_GROUP names (3770)."""
    group = shared_group()
    return open_directory(
        directory or state_dir(), SHARED if group is not None else PRIVATE, group, role="the state directory"
    )


@dataclass
class Ledger:
    path: Path
    run_id: str
    dir_fd: int
    fd: int
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    _next: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # engine and monitor threads

    @classmethod
    def create(cls, run_id: str, directory: Path | None = None) -> Ledger:
        """A new ledger, created exclusively (a run id is never shared) and kept open for the run."""
        folder = directory or state_dir()
        dir_fd = open_state_dir(folder)
        try:
            fd = create_file(
                dir_fd, run_id + SUFFIX, mode=0o640 if shared_group() is not None else 0o600, append=True
            )
            os.fsync(dir_fd)
        except OSError as error:
            os.close(dir_fd)
            raise Untrusted(
                f"cannot create the run's ledger: {error.strerror or error}", where=str(folder)
            ) from None
        ledger = cls(folder / (run_id + SUFFIX), run_id, dir_fd, fd)
        ledger._append(
            {
                "run": run_id,
                "pid": os.getpid(),
                "start_ticks": process_start_ticks(os.getpid()),
                "created": time.time(),
            }
        )
        return ledger

    def record(self, what: str, action: UndoAction) -> int:
        """Write down how to undo what is about to be done; returns the entry id for `done`."""
        with self._lock:
            entry_id = self._next
            self._next += 1
            self.pending[entry_id] = {"id": entry_id, "what": what, "undo": action.to_data()}
            self._append(self.pending[entry_id])
        return entry_id

    @contextmanager
    def intent(
        self, what: str, action: UndoAction, not_made: type[BaseException] | tuple[type[BaseException], ...]
    ) -> Iterator[int]:
        """Record a change, then make it in the body: when the body fails with `not_made` (an error
        that proves nothing changed), the entry is closed, since there is nothing to undo. Any other
        exit (a signal, say) leaves it open for the revert and for `gameday recover`."""
        entry_id = self.record(what, action)
        try:
            yield entry_id
        except not_made:
            self.done(entry_id)
            raise

    def done(self, entry_id: int) -> None:
        with self._lock:
            if self.pending.pop(entry_id, None) is not None:
                self._append({"done": entry_id})

    def close(self) -> None:
        """Remove the ledger if nothing is left to undo (otherwise `gameday recover` needs it)."""
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        try:
            if not self.pending:
                os.unlink(self.path.name, dir_fd=self.dir_fd)
                os.fsync(self.dir_fd)
        finally:
            os.close(self.dir_fd)

    def _append(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]
        os.fsync(self.fd)


@dataclass(frozen=True)
class Entry:
    what: str
    action: UndoAction | None  # None: the line is not an undo gameday writes (`refused` says why)
    refused: str = ""


@dataclass(frozen=True)
class LedgerState:
    path: Path
    run_id: str
    pid: int
    alive: bool
    pending: list[Entry]
    owner: int  # uid of the file's owner: whose run it was

    @property
    def blocks(self) -> bool:
        """Whether this dead run's leftovers keep new runs from starting: only this user's or
        root's ledgers do (another user's, in a shared directory, are theirs to recover)."""
        return not self.alive and bool(self.pending) and self.owner in (os.geteuid(), 0)


def read_ledger(dir_fd: int, name: str, folder: Path) -> LedgerState:
    data, info = read_regular(dir_fd, name)
    header: dict[str, Any] = {}
    entries: dict[int, dict[str, Any]] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a torn last line from a crash: what it would have said was never acted on
        if not isinstance(item, dict):
            continue
        if "run" in item and not header:
            header = item
        elif "done" in item:
            if isinstance(item["done"], int):
                entries.pop(item["done"], None)
        elif isinstance(item.get("id"), int):
            entries[item["id"]] = item
    run_id = name.removesuffix(SUFFIX)  # the name, not the header, says whose changes these are
    pid = header.get("pid")
    pid = pid if type(pid) is int and pid > 0 else 0
    alive = pid > 0 and process_start_ticks(pid) == header.get("start_ticks")
    pending = [_entry(item, run_id, info.st_uid) for item in entries.values()]
    return LedgerState(folder / name, run_id, pid, alive, pending, info.st_uid)


def _entry(item: dict[str, Any], run_id: str, owner: int) -> Entry:
    what = str(item.get("what", "?"))[:200]
    try:
        return Entry(what, undo_forms.parse(item.get("undo"), run_id, owner))
    except undo_forms.Refused as refused:
        return Entry(what, None, str(refused))


@dataclass(frozen=True)
class Scan:
    states: list[LedgerState]
    skipped: list[str]  # files named *.ledger that are not ledgers gameday trusts, and why


def scan(directory: Path | None = None) -> Scan:
    folder = directory or state_dir()
    if not folder.exists():
        return Scan([], [])
    dir_fd = open_state_dir(folder)
    states, skipped = [], []
    try:
        for name in sorted(os.listdir(dir_fd)):
            if not name.endswith(SUFFIX):
                continue
            try:
                states.append(read_ledger(dir_fd, name, folder))
            except OSError as error:
                skipped.append(f"{folder / name}: {error.strerror or error}")
    finally:
        os.close(dir_fd)
    return Scan(states, skipped)


def ledgers(directory: Path | None = None) -> list[LedgerState]:
    return scan(directory).states


def recover(directory: Path | None = None) -> tuple[list[str], list[str]]:
    """Undo what dead runs left behind, newest change first. Returns (done, failed) descriptions.
    Idempotent: what is already gone counts as done. A line that is not an undo gameday writes is
    never run: it counts as failed, and its ledger stays for a person to look at."""
    done, failed = [], []
    found = scan(directory)
    failed += [f"skipped {reason}" for reason in found.skipped]
    me = os.geteuid()
    for state in found.states:
        if state.alive or (state.owner != me and me != 0):
            continue
        problems = []
        for entry in reversed(state.pending):
            problem = entry.action.perform() if entry.action is not None else f"cannot undo: {entry.refused}"
            if problem is None:
                done.append(f"{state.run_id}: {entry.what}")
            else:
                problems.append(problem)
                failed.append(f"{state.run_id}: {entry.what}: {problem}")
        if not problems:
            dir_fd = open_state_dir(directory)
            try:
                os.unlink(state.path.name, dir_fd=dir_fd)
                os.fsync(dir_fd)
            except FileNotFoundError:
                pass
            finally:
                os.close(dir_fd)
    return done, failed

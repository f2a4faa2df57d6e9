"""One experiment at a time per target.

A target is what the faults would touch, as its driver names it (drivers.base.Driver.lock_key):
the system behind the load's host (address and port), a Docker engine... The lock is an flock(2) on a file
in the state directory's `locks/`, which also says who holds it. Runs with different state
directories (by default, different users) do not see each other's locks. The kernel drops an flock when its
holder dies, even by SIGKILL, so a lock is never stale; what a dead run left behind is the
ledger's business (`gameday recover`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from chaoslib_ext.errors import RunAborted, TargetBusy
from chaoslib_ext.state.ledger import open_state_dir, state_dir
from chaoslib_ext.state.trust import PRIVATE, SHARED, Untrusted, open_directory, shared_group


def address_key(url: str) -> str:
    """host:port of a URL, the host by address (so that localhost and 127.0.0.1 are one target)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    with contextlib.suppress(OSError):  # unresolvable now: its name is the best key there is
        host = socket.gethostbyname(host)
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class TargetLock:
    """The flock that makes a run the only one on its target. Its file is removed when released,
    so that none piles up; a run that locked a file another run removed meanwhile (it released
    between our open and our flock) sees that the path no longer names its file, and tries again."""

    def __init__(self, key: str, stream: IO[str], dir_fd: int, name: str) -> None:
        self.key = key
        self._stream = stream
        self._dir_fd = dir_fd
        self._name = name

    @classmethod
    def acquire(cls, key: str, run_id: str, experiment: Path, directory: Path | None = None) -> TargetLock:
        """Take the target's lock, or say who holds it (exit code 3). The lock file is opened in a
        trusted directory without following symlinks, and only truncated once the lock is held."""
        group = shared_group()
        locks = (directory or state_dir()) / "locks"
        name = hashlib.sha256(key.encode()).hexdigest()[:16] + ".lock"
        os.close(open_state_dir(directory))  # checks the state directory itself first
        dir_fd = open_directory(
            locks, SHARED if group is not None else PRIVATE, group, role="the lock directory"
        )
        try:
            for _ in range(ATTEMPTS):
                stream = _open(dir_fd, name, group, locks)
                try:
                    fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    stream.seek(0)
                    holder = _holder(stream.read())
                    stream.close()
                    raise TargetBusy(
                        f"{key} is in use by another experiment: {holder}",
                        hint="one experiment at a time per target: wait for it to end, or stop it",
                    ) from None
                if _still_named(stream, dir_fd, name):
                    break
                stream.close()  # its holder removed it as it let go: take the new one
            else:
                raise RunAborted(f"{key}: its lock file keeps changing", hint="try again")
        except BaseException:
            os.close(dir_fd)
            raise
        stream.seek(0)
        stream.truncate()
        claim = {"run": run_id, "pid": os.getpid(), "experiment": str(experiment), "since": time.time()}
        stream.write(json.dumps(claim) + "\n")
        stream.flush()
        return cls(key, stream, dir_fd, name)

    def release(self) -> None:
        """Remove the lock file, then let go of it (closing drops the flock); remove the files of
        runs that died without letting go too (the kernel dropped their flocks)."""
        try:
            if _still_named(self._stream, self._dir_fd, self._name):
                with contextlib.suppress(OSError):
                    os.unlink(self._name, dir_fd=self._dir_fd)
            self._stream.close()
            _prune(self._dir_fd)
        finally:
            self._stream.close()
            os.close(self._dir_fd)


ATTEMPTS = 20


def _open(dir_fd: int, name: str, group: int | None, locks: Path) -> IO[str]:
    try:
        fd = os.open(
            name,
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            0o660 if group is not None else 0o600,
            dir_fd=dir_fd,
        )
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise OSError(f"{name} is not a regular file")
        if group is not None and info.st_uid == os.geteuid():
            os.fchmod(fd, 0o660)  # whatever the umask: the group's other runs must take it too
    except OSError as error:
        raise Untrusted(
            f"cannot use the lock file: {error.strerror or error}",
            where=str(locks / name),
            hint="remove it if it is not gameday's",
        ) from None
    return os.fdopen(fd, "r+", encoding="utf-8")


def _prune(dir_fd: int) -> None:
    """Remove the lock files nobody holds (left by runs killed before they could)."""
    for name in os.listdir(dir_fd):
        if not name.endswith(".lock"):
            continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            continue
        with os.fdopen(fd, "r") as stream:
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: a run is using it
            if stat.S_ISREG(os.fstat(fd).st_mode) and _still_named(stream, dir_fd, name):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=dir_fd)


def _still_named(stream: IO[str], dir_fd: int, name: str) -> bool:
    """Whether the lock file's path still names the file this stream has open."""
    try:
        current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(stream.fileno())
    return (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)


def _holder(text: str) -> str:
    try:
        holder = json.loads(text)
        since = time.strftime("%H:%M:%S", time.localtime(holder["since"]))
        return f"run {holder['run']} (pid {holder['pid']}, {holder['experiment']}, since {since})"
    except (ValueError, KeyError, TypeError):
        return "a run that has not said who it is yet"

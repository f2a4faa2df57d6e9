"""One experiment at a time per target.

A target is what the faults would touch: for the local driver, the system behind the load's host
(address and port); for the docker driver, the Docker engine. The lock is an flock(2) on a file
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

from .errors import RunAborted
from .ledger import open_state_dir, state_dir
from .spec.model import Experiment
from .trust import PRIVATE, SHARED, Untrusted, open_directory, shared_group


def target_key(experiment: Experiment, docker_engine_id: str = "") -> str:
    """The docker driver: the engine (by its ID, however it is reached). The local driver: the
    load's host (by address, so that localhost and 127.0.0.1 are one target) and port."""
    if experiment.driver == "docker":
        return f"docker engine {docker_engine_id}"
    parts = urlsplit(experiment.load.host)
    host = parts.hostname or ""
    with contextlib.suppress(OSError):  # unresolvable now: its name is the best key there is
        host = socket.gethostbyname(host)
    return f"local {host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class TargetLock:
    def __init__(self, key: str, stream: IO[str]) -> None:
        self.key = key
        self._stream = stream

    @classmethod
    def acquire(cls, key: str, run_id: str, experiment: Path, directory: Path | None = None) -> TargetLock:
        """Take the target's lock, or say who holds it (exit code 3). The lock file is opened in a
        trusted directory without following symlinks, and only truncated once the lock is held."""
        group = shared_group()
        locks = (directory or state_dir()) / "locks"
        name = hashlib.sha256(key.encode()).hexdigest()[:16] + ".lock"
        state = open_state_dir(directory)  # checks the state directory itself first
        os.close(state)
        dir_fd = open_directory(locks, SHARED if group is not None else PRIVATE, group)
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
        finally:
            os.close(dir_fd)
        stream = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.seek(0)
            holder = _holder(stream.read())
            stream.close()
            raise RunAborted(
                f"{key} is in use by another experiment: {holder}",
                hint="one experiment at a time per target: wait for it to end, or stop it",
            ) from None
        stream.seek(0)
        stream.truncate()
        holder = {"run": run_id, "pid": os.getpid(), "experiment": str(experiment), "since": time.time()}
        stream.write(json.dumps(holder) + "\n")
        stream.flush()
        return cls(key, stream)

    def release(self) -> None:
        self._stream.close()  # closing drops the flock


def _holder(text: str) -> str:
    try:
        holder = json.loads(text)
        since = time.strftime("%H:%M:%S", time.localtime(holder["since"]))
        return f"run {holder['run']} (pid {holder['pid']}, {holder['experiment']}, since {since})"
    except (ValueError, KeyError, TypeError):
        return "a run that has not said who it is yet"

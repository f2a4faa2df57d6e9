"""The directories and files gameday trusts when it runs as root on a shared machine: its state
directory (ledgers, locks) and each run's report directory.

A path another user could swap is refused with a one-line error, as ssh's StrictModes refuses a
key file: a symlink, a directory not owned by this user or root, or one that others can write
(the state directory may be shared with one group, named in GAMEDAY_STATE_GROUP, when it is also
sticky, so that nobody deletes another's files). Files are opened relative to a directory held
open, without following symlinks, created exclusively, and read only when they are regular files
of a bounded size.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from chaoslib_ext.errors import RunAborted

SHARED_GROUP_VARIABLE = "GAMEDAY_STATE_GROUP"
MAX_FILE_BYTES = 8 * 1024 * 1024
PRIVATE = 0o700
SHARED = 0o3770  # setgid (files keep the group) and sticky (nobody deletes another's files)


class Untrusted(RunAborted):
    """A path gameday will not use: another user could change what it holds."""


def shared_group() -> int | None:
    """The group a shared state directory belongs to, if GAMEDAY_STATE_GROUP names one."""
    name = os.environ.get(SHARED_GROUP_VARIABLE)
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise Untrusted(
            f"{SHARED_GROUP_VARIABLE}={name}: no such group",
            hint="name the group that shares the state directory",
        ) from None


def trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def open_directory(
    path: Path, create_mode: int = PRIVATE, group: int | None = None, role: str = "the directory"
) -> int:
    """A descriptor on `path` (created with `create_mode` if missing), which must be a real
    directory owned by this user or root that no other user can write to (but the sharing group,
    on a sticky directory)."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir(mode=create_mode & 0o777)
            if group is not None:
                os.chown(path, -1, group)
            os.chmod(path, create_mode)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise Untrusted(
            f"cannot use {role}: {error.strerror or error}"
            + (" (it is a symlink)" if path.is_symlink() else ""),
            where=str(path),
            hint="give a directory of your own (not a symlink)",
        ) from None
    try:
        check_directory(os.fstat(fd), path, group)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_directory(info: os.stat_result, path: Path, group: int | None) -> None:
    if not trusted_owner(info.st_uid):
        raise Untrusted(
            f"owned by uid {info.st_uid}, not by you or root",
            where=str(path),
            hint="use a directory of your own",
        )
    if info.st_mode & stat.S_IWOTH:
        raise Untrusted("every user can write to it", where=str(path), hint=f"chmod o-w {path}")
    shared = info.st_gid == group and info.st_mode & stat.S_ISVTX
    if info.st_mode & stat.S_IWGRP and not shared and not _private_group(info.st_gid):
        raise Untrusted(
            "its group can write to it",
            where=str(path),
            hint=f"chmod g-w {path}, or share it on purpose: {SHARED_GROUP_VARIABLE}=<group> and chmod 3770",
        )


def _private_group(gid: int) -> bool:
    """A user-private group (the user's own, with nobody else in it), as umask 002 systems make."""
    try:
        group, user = grp.getgrgid(gid), pwd.getpwuid(os.geteuid())
    except KeyError:
        return False
    return group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}


def create_file(dir_fd: int, name: str, mode: int = 0o600, append: bool = False) -> int:
    """A new file in a directory held open: exclusively, never through a symlink."""
    flags = (
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if append else 0)
    )
    return os.open(name, flags, mode, dir_fd=dir_fd)


def read_regular(dir_fd: int, name: str, limit: int = MAX_FILE_BYTES) -> tuple[bytes, os.stat_result]:
    """The content of a regular file of at most `limit` bytes (a FIFO, a device, a symlink or a
    huge file raises OSError instead of hanging or exhausting memory)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"not a regular file: {name}")
        if info.st_size > limit:
            raise OSError(f"larger than {limit} bytes: {name}")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 16):
            total += len(chunk)
            if total > limit:
                raise OSError(f"larger than {limit} bytes: {name}")
            chunks.append(chunk)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def replace_file(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to a temporary file beside `name`, fsync, then rename it over `name`: never
    half a file, and never through a symlink."""
    temporary = f".{name}.{secrets.token_hex(4)}"
    fd = create_file(dir_fd, temporary, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


class RunDirectory:
    """A run's report directory: `<report dir>/<run id>`, created and held open; every file in it
    is created relative to it, so swapping a path for a symlink while the run lasts redirects
    nothing. The reports (secrets masked) are 0644 and their directory 0755, so that CI can
    publish them; logs/, which may hold secrets until the run ends, is 0700 with 0600 files."""

    def __init__(self, path: Path, fd: int, logs_fd: int) -> None:
        self.path = path
        self.fd = fd
        self.logs_fd = logs_fd

    @classmethod
    def create(cls, report_dir: Path, run_id: str) -> RunDirectory:
        parent = open_directory(report_dir, create_mode=0o755, role="the report directory")
        try:
            os.mkdir(run_id, 0o755, dir_fd=parent)
            fd = os.open(run_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            os.mkdir("logs", PRIVATE, dir_fd=fd)
            logs_fd = os.open("logs", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as error:
            raise Untrusted(
                f"cannot create the run's report directory: {error.strerror or error}",
                where=str(report_dir / run_id),
                hint="choose another --report-dir",
            ) from None
        finally:
            os.close(parent)
        return cls(report_dir / run_id, fd, logs_fd)

    def log_path(self, name: str) -> Path:
        return self.path / "logs" / name

    def create_log(self, name: str) -> IO[bytes]:
        """A log a service or Locust writes (appended to, for as long as the run needs it)."""
        return os.fdopen(create_file(self.logs_fd, name, append=True), "ab")

    def read_log(self, name: str) -> str:
        try:
            return read_regular(self.logs_fd, name)[0].decode(errors="replace")
        except OSError:
            return ""

    def rewrite_logs(self, change: Callable[[str], str]) -> None:
        """Pass every log through `change` (the masking of secrets), each replaced atomically, 0600."""
        for name in os.listdir(self.logs_fd):
            if name.startswith("."):
                continue
            text = self.read_log(name)
            changed = change(text)
            if changed != text:
                replace_file(self.logs_fd, name, changed.encode())

    def write(self, name: str, text: str, mode: int = 0o644) -> Path:
        """A report file, written atomically (temporary file, fsync, rename)."""
        replace_file(self.fd, name, text.encode(), mode)
        return self.path / name

    def close(self) -> None:
        for fd in (self.logs_fd, self.fd):
            with contextlib.suppress(OSError):
                os.close(fd)

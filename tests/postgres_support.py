"""A real PostgreSQL server for the tests: Debian's binaries, a throwaway cluster on 127.0.0.1,
one fresh database per test. Skipped, with the reason, where none can be started."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

USER = "gameday"


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` (or `nobody`) user."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    pytest.skip("running as root with neither a postgres nor a nobody user to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A cluster's base URL (no database): postgresql://gameday@127.0.0.1:PORT."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server here (apt-get install postgresql; .ci/run does)")
    if shutil.which("runuser") is None and os.geteuid() == 0:
        pytest.skip("runuser is needed to start PostgreSQL as root")
    prefix = _as_server_user()
    # not under pytest's own (0700, root's) temporary directory: the server's user must reach it
    base = Path(tempfile.mkdtemp(prefix="gameday-postgres-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    if prefix:
        shutil.chown(base, user=prefix[2])
        shutil.chown(sockets, user=prefix[2])
    subprocess.run(
        [*prefix, str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    started = subprocess.run(
        [
            *prefix,
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "log"),
            "-w",
            "start",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        log = (base / "log").read_text(errors="replace") if (base / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{log}")
    try:
        yield f"postgresql://{USER}@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the test server."""
    import psycopg

    name = f"history_{secrets.token_hex(4)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"

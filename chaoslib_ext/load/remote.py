"""`gameday worker`: a Locust worker, with gameday's recorder, that joins a run's master from
another machine (or another terminal). It becomes the Locust process itself (exec), so that its
exit code and signals are Locust's; a master that refuses it makes it exit with code 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from chaoslib_ext.errors import SpecError


def parse_master(master: str) -> tuple[str, int]:
    """HOST:PORT of the master, as load.workers.bind says where it listens."""
    host, _, port = master.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(
            f"--master {master}: expected HOST:PORT",
            hint="e.g. --master 10.0.0.5:5557 (load.workers.bind of the run)",
        )
    return host, int(port)


def worker_command(master: str, locustfile: Path, processes: str) -> list[str]:
    """The Locust worker command line; `processes` > 1 (or auto): Locust forks that many workers."""
    host, port = parse_master(master)
    if not locustfile.is_file():
        raise SpecError(
            f"{locustfile}: no such locustfile", hint="the same file the run's load.locustfile names"
        )
    if not (processes == "auto" or (processes.isdigit() and int(processes) >= 1)):
        raise SpecError(
            f"--processes {processes}: expected a number of processes or auto", hint="e.g. --processes 4"
        )
    command = [sys.executable, "-m", "chaoslib_ext.load.child", "-f", str(locustfile), "--worker"]
    command += ["--master-host", host, "--master-port", str(port)]
    if processes != "1":
        count = str(len(os.sched_getaffinity(0))) if processes == "auto" else processes  # as load.processes
        command += ["--processes", count]
    return command


def become_worker(master: str, locustfile: Path, processes: str) -> NoReturn:
    command = worker_command(master, locustfile, processes)
    os.execv(command[0], command)

"""Start a child that waits for gameday's word before it becomes the program it was started for.

The child is a tiny shell in a session of its own that reads one line from a pipe on its stdin,
then execs the program with stdin from /dev/null (same pid, same process group). gameday writes
the group to its ledger first, then the line. If gameday dies in between, even by SIGKILL, the
pipe closes empty and the shell exits without ever starting the program: no process group is ever
left that the ledger does not know.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

SHELL = "/bin/sh"


def start_held(argv: list[str], **popen: Any) -> tuple[subprocess.Popen[bytes], Callable[[], None]]:
    """Start `argv` held (in a new session, its stdin /dev/null once it runs), and the function
    that lets it go. Raises OSError when the program does not exist, as Popen would."""
    program = argv[0]
    if "/" in program:
        found = os.access(os.path.join(popen.get("cwd") or ".", program), os.X_OK)
    else:
        found = shutil.which(program, path=popen.get("env", os.environ).get("PATH")) is not None
    if not found:
        raise FileNotFoundError(2, "No such file or directory", program)
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(
            [SHELL, "-c", 'read -r go && exec "$@" </dev/null', "gameday-held", *argv],
            stdin=read_fd,
            start_new_session=True,
            **popen,
        )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)

    def release() -> None:
        try:
            os.write(write_fd, b"go\n")
        finally:
            os.close(write_fd)

    return process, release

"""Whether a TCP port on 127.0.0.1 is taken, and by which process, for one-line errors that say
what to stop."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_holder(port: int) -> str:
    """Who listens on the port: "pid 4242 (python3 -m http.server 8080)", or what can be said
    when its process is another user's."""
    inodes = _listening_inodes(port)
    if not inodes:
        return "a socket that is not listening (TIME_WAIT, or being set up)"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue  # gone, or another user's
        if any(f"socket:[{inode}]" in links for inode in inodes):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return f"pid {pid} ({command.strip()[:80]})"
    return "a process of another user"


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes

"""DNS faults inside a container, with no change to its image.

The run's fault DNS server listens on 127.0.0.1 *inside the container's network namespace*: its
sockets are made by a short-lived thread that joins the namespace with setns(2), and a socket stays
in the namespace it was made in. One iptables rule there (nat OUTPUT, REDIRECT) sends the
container's UDP queries to it, whatever resolver they were meant for (Docker's embedded 127.0.0.11
or the host's). Queries no fault touches go on to that resolver, from a socket carrying a packet
mark that the redirect skips. The rule is in the run's ledger before it is added; if the container
restarts, the rule goes with its old namespace (the ledger's undo then finds nothing to delete).
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.netfault.dns import FaultDnsServer, Forwarder
from chaoslib_ext.netfault.kernel import run
from chaoslib_ext.netfault.proxy import FaultHub
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.undo import DeleteRule, ForgetDnsFlows, Place

CLONE_NEWNET = 0x40000000
FORWARD_MARK = 0x6764  # "gd": the forwarder's own queries, which the redirect lets through
T = TypeVar("T")


def in_network_namespace(path: str, make: Callable[[], T]) -> T:
    """Call `make` on a thread that has joined the network namespace at `path` (only that thread
    moves: setns changes the calling thread's namespace, not the process's)."""
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: dict[str, object] = {}

    def joined() -> None:
        try:
            target = os.open(path, os.O_RDONLY)
        except OSError as error:
            outcome["error"] = RunAborted(f"cannot open the network namespace {path}: {error.strerror}")
            return
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                outcome["error"] = RunAborted(f"setns into {path} failed: {os.strerror(code)}")
                return
            outcome["value"] = make()
        except Exception as error:
            outcome["error"] = error
        finally:
            os.close(target)

    thread = threading.Thread(target=joined, name="setns")  # it ends here, inside the namespace
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def first_nameserver(resolv_conf: str) -> str:
    """The IPv4 resolver a container's queries go to, from the resolv.conf Docker keeps for it."""
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError as error:
        raise RunAborted(f"cannot read the container's resolv.conf: {error}") from None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
            return parts[1]
    raise RunAborted(
        f"{resolv_conf} names no IPv4 nameserver",
        hint="DNS faults in containers intercept IPv4 UDP queries only",
    )


class ContainerResolver:
    """The fault DNS server in one container, and the redirect that sends its lookups there."""

    def __init__(self, hub: FaultHub, name: str, netns: str, resolv_conf: str, ledger: Ledger) -> None:
        self.hub = hub
        self.name = name
        self.ledger = ledger
        self.upstream = first_nameserver(resolv_conf)
        listen, forward = self._sockets(netns)
        try:
            self.forwarder = Forwarder(hub, forward)
            self.server = FaultDnsServer(hub, listen, self.forwarder)
        except BaseException:
            listen.close()
            forward.close()
            raise
        place = Place(sandbox=netns)
        rule = (
            *("OUTPUT", "-p", "udp", "--dport", "53", "-m", "mark", "!", "--mark", str(FORWARD_MARK)),
            *("-m", "comment", "--comment", f"gameday:{ledger.run_id}:dns"),
            *("-j", "REDIRECT", "--to-ports", str(self.server.port)),
        )
        # nat only sees a flow's first packet: forget the container's DNS flows after each change,
        # so that a client that keeps its socket is redirected now, and let go of afterwards.
        self._forget = ForgetDnsFlows(place)
        self._unredirect = DeleteRule(place, "nat", rule)
        self._entries = [
            ledger.record(f"DNS flows in {name}", self._forget),  # undone last: after the rule is gone
            ledger.record(f"DNS redirect in {name}", self._unredirect),
        ]
        try:
            run(self._unredirect.add_argv(), place)
        except RunAborted:  # iptables said no: nothing was added
            for entry in self._entries:
                ledger.done(entry)
            self._entries = []
            self._close_sockets()
            raise
        except BaseException:  # interrupted: it may be in place, so take it out before leaving
            self.close()
            raise
        self._forget.perform()

    def _sockets(self, netns: str) -> tuple[socket.socket, socket.socket]:
        def make() -> tuple[socket.socket, socket.socket]:
            listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                listen.bind(("127.0.0.1", 0))
                forward = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    forward.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, FORWARD_MARK)
                    forward.connect((self.upstream, 53))
                except BaseException:
                    forward.close()
                    raise
            except BaseException:
                listen.close()
                raise
            return listen, forward

        try:
            return in_network_namespace(netns, make)
        except OSError as error:
            raise RunAborted(
                f"cannot set up DNS in container {self.name}: {error.strerror or error}",
                hint=f"its resolver {self.upstream} must be reachable from inside it",
            ) from None

    @property
    def address(self) -> str:
        return f"{self.name}:127.0.0.1:{self.server.port}"

    def close(self) -> None:
        """Take the redirect out (the container's lookups go straight to its resolver again). If
        that fails, the server keeps answering, so the container's lookups still work meanwhile."""
        if self._entries:
            forget, unredirect = self._entries
            for entry, action in ((unredirect, self._unredirect), (forget, self._forget)):
                problem = action.perform()
                if problem is not None:
                    raise RunAborted(f"could not remove the DNS redirect in {self.name}: {problem}")
                self.ledger.done(entry)
            self._entries = []
        self._close_sockets()

    def _close_sockets(self) -> None:
        self.hub.call(self.server.close)
        self.hub.call(self.forwarder.close)

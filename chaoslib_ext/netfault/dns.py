"""A fault-injecting DNS server (UDP).

For names that match a rule's glob patterns it returns an error code, drops the query (the client
times out), answers late, or answers with spoofed addresses. Everything else goes to its upstream:
`RunNames` (the local driver: the run's own names from a table, other names through the system
resolver) or `Forwarder` (inside a container: the container's own resolver, untouched).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
import socket
import struct
from collections import Counter
from typing import Protocol, cast

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import LookupFault
from chaoslib_ext.faults.dns_delay import DnsDelay
from chaoslib_ext.faults.dns_error import DnsError
from chaoslib_ext.faults.dns_spoof import DnsSpoof
from chaoslib_ext.netfault.proxy import FaultHub

DEFAULT_TTL = 5
DNS_ZONE = "gameday.internal"  # the run's own names; never forwarded to the system resolver
RCODES = {"SERVFAIL": RCODE.SERVFAIL, "NXDOMAIN": RCODE.NXDOMAIN, "REFUSED": RCODE.REFUSED}


class Upstream(Protocol):
    async def answer(self, query: DNSRecord) -> bytes | None:
        """The reply a query gets when no fault touches it; None: no reply (the client times out)."""
        ...


def loopback_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    return sock


class _Endpoint(asyncio.DatagramProtocol):
    """One socket a FaultDnsServer answers on."""

    def __init__(self, server: FaultDnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.received(data, addr, self)


class FaultDnsServer:
    """UDP DNS on bound sockets (127.0.0.1 of the host or of a container, and an address of its own
    on port 53 for services that use gameday as their system resolver), on the run's FaultHub loop.
    Its rules apply on every socket."""

    def __init__(self, hub: FaultHub, sock: socket.socket, upstream: Upstream) -> None:
        self.hub = hub
        self.upstream = upstream
        self.rules: dict[str, LookupFault] = {}
        self.rule_hits: dict[str, Counter[str]] = {}  # per rule: what it did, for its fault's report
        self.rng = random.Random()
        self.port: int = sock.getsockname()[1]
        self._endpoints: list[_Endpoint] = []
        self.system_address = ""  # 127.x.y.z, port 53: for services that use it as their system resolver
        self._answering: set[asyncio.Task[None]] = set()  # keep tasks referenced until they finish
        self.listen(sock)
        hub.closers.append(self.close)

    def listen_on_port_53(self) -> str:
        """Answer on port 53 of a loopback address of the run's own too (root), which a
        resolv.conf can name (it cannot name a port); returns that address."""
        if not self.system_address:
            rng = random.Random()
            for _ in range(50):
                address = f"127.53.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sock.bind((address, 53))
                except OSError:
                    sock.close()
                    continue
                self.listen(sock)
                self.system_address = address
                break
            else:
                raise RunAborted("no loopback address with a free port 53 for the run's resolver")
        return self.system_address

    def listen(self, sock: socket.socket) -> None:
        """Answer on one more bound UDP socket too."""
        endpoint = _Endpoint(self)

        async def open_endpoint() -> None:
            await self.hub.loop.create_datagram_endpoint(lambda: endpoint, sock=sock)

        self.hub.run(open_endpoint())
        self._endpoints.append(endpoint)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, rule_id: str, rule: LookupFault, seed: int | None = None) -> None:
        def install() -> None:
            if seed is not None:
                self.rng.seed(seed)
            self.rules[rule_id] = rule

        self.hub.call(install)

    def remove(self, rule_id: str) -> dict[str, int]:
        """End a rule; returns what it did (queries it matched, errors, drops, delays, spoofs)."""

        def uninstall() -> dict[str, int]:
            self.rules.pop(rule_id, None)
            return dict(self.rule_hits.pop(rule_id, Counter()))

        return self.hub.call(uninstall)

    def received(self, data: bytes, addr: tuple[str, int], endpoint: _Endpoint) -> None:
        try:
            query = DNSRecord.parse(data)
        except Exception:  # not DNS: ignore, as a real server would
            return
        task = asyncio.ensure_future(self._answer(query, addr, endpoint))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, query: DNSRecord, addr: tuple[str, int], endpoint: _Endpoint) -> None:
        name = str(query.q.qname).lower().rstrip(".")
        spoofed: list[str] = []
        for rule_id, rule in list(self.rules.items()):
            if not rule.matches(name):
                continue
            hits = self.rule_hits.setdefault(rule_id, Counter())
            hits["matched"] += 1
            if self.rng.random() >= rule.probability:
                continue
            if isinstance(rule, DnsError):
                if rule.rcode == "TIMEOUT":
                    hits["dropped"] += 1
                    return
                hits[rule.rcode] += 1
                reply = query.reply()
                reply.header.rcode = RCODES[rule.rcode]
                self._send(reply.pack(), addr, endpoint)
                return
            if isinstance(rule, DnsDelay):
                hits["delayed"] += 1
                await asyncio.sleep(rule.delay)
            elif isinstance(rule, DnsSpoof):
                hits["spoofed"] += 1
                spoofed = list(rule.addresses)
        answer = addressed_reply(query, spoofed) if spoofed else await self.upstream.answer(query)
        if answer is not None:
            self._send(answer, addr, endpoint)

    @staticmethod
    def _send(reply: bytes, addr: tuple[str, int], endpoint: _Endpoint) -> None:
        if endpoint.transport is not None:
            endpoint.transport.sendto(reply, addr)

    def close(self) -> None:
        for endpoint in self._endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()


class RunNames:
    """The local driver's upstream: the run's own names from a table, other names through the system
    resolver (getaddrinfo). Names in DNS_ZONE that the table lacks do not exist."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = {name.lower().rstrip("."): addresses for name, addresses in records.items()}

    async def answer(self, query: DNSRecord) -> bytes:
        name = str(query.q.qname).lower().rstrip(".")
        if name in self.records:
            return addressed_reply(query, self.records[name])
        if name == DNS_ZONE or name.endswith("." + DNS_ZONE):
            return addressed_reply(query, None)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return addressed_reply(query, None)
        # an IPv4 or IPv6 socket address starts with the address as a string
        return addressed_reply(query, sorted({info[4][0] for info in infos if isinstance(info[4][0], str)}))


def addressed_reply(query: DNSRecord, addresses: list[str] | None) -> bytes:
    """A reply with these addresses (those of the asked type); None: NXDOMAIN."""
    reply = query.reply()
    if addresses is None:
        reply.header.rcode = RCODE.NXDOMAIN
        return cast(bytes, reply.pack())  # dnslib is untyped
    for address in addresses:
        record = _record(address, query.q.qtype)
        if record is not None:
            reply.add_answer(
                RR(query.q.qname, QTYPE.reverse[type(record).__name__], rdata=record, ttl=DEFAULT_TTL)
            )
    return cast(bytes, reply.pack())


class Forwarder(asyncio.DatagramProtocol):
    """The upstream inside a container: its own resolver, over one socket connected to it. Replies
    are relayed as received but for the transaction id: queries carry random ids of the
    forwarder's own (two clients may pick the same one), and a reply counts only if its id and
    question match what was sent."""

    TIMEOUT_SECONDS = 5.0

    def __init__(self, hub: FaultHub, sock: socket.socket) -> None:
        host, port = sock.getpeername()
        self.upstream = f"{host}:{port}"
        self._pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}  # id: (question, reply)
        self._transport: asyncio.DatagramTransport | None = None

        async def open_endpoint() -> None:
            await hub.loop.create_datagram_endpoint(lambda: self, sock=sock)

        hub.run(open_endpoint())
        hub.closers.append(self.close)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a datagram transport

    async def answer(self, query: DNSRecord) -> bytes | None:
        if self._transport is None or len(self._pending) > 60_000:
            return None
        ident = secrets.randbelow(65536)
        while ident in self._pending:
            ident = secrets.randbelow(65536)
        packet = struct.pack("!H", ident) + query.pack()[2:]
        question = DNSRecord(q=query.q).pack()[12:]  # the question section alone, as sent
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[ident] = (question, future)
        self._transport.sendto(packet)
        try:
            reply = await asyncio.wait_for(future, self.TIMEOUT_SECONDS)
        except TimeoutError:
            return None  # the resolver never answered: neither does the forwarder
        finally:
            self._pending.pop(ident, None)
        return struct.pack("!H", query.header.id) + reply[2:]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        question, future = self._pending.get(struct.unpack("!H", data[:2])[0], (b"", None))
        if future is not None and not future.done() and data[12 : 12 + len(question)] == question:
            future.set_result(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _record(address: str, qtype: int) -> A | AAAA | None:
    ip = ipaddress.ip_address(address)
    if ip.version == 4 and qtype in (QTYPE.A, QTYPE.ANY):
        return A(address)
    if ip.version == 6 and qtype in (QTYPE.AAAA, QTYPE.ANY):
        return AAAA(address)
    return None

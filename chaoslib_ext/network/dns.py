"""A fault-injecting DNS server (UDP) for the names a run controls.

It answers the run's own names from a static table, answers other names through the system
resolver (getaddrinfo), and, for names that match a rule's glob patterns, returns an error code,
drops the query (the client times out), answers late, or answers with spoofed addresses.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import random
import socket
from collections import Counter
from dataclasses import dataclass

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

from .proxy import FaultHub

DEFAULT_TTL = 5
DNS_ZONE = "gameday.internal"  # the run's own names; never forwarded to the system resolver
RCODES = {"SERVFAIL": RCODE.SERVFAIL, "NXDOMAIN": RCODE.NXDOMAIN, "REFUSED": RCODE.REFUSED}


@dataclass(frozen=True)
class DnsRule:
    """One DNS fault: error (an rcode, or TIMEOUT to drop), delay, or spoof."""

    kind: str  # error | delay | spoof
    patterns: tuple[str, ...]
    rcode: str = "SERVFAIL"  # SERVFAIL | NXDOMAIN | REFUSED | TIMEOUT
    probability: float = 1.0
    delay: float = 0.0
    addresses: tuple[str, ...] = ()

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern.lower().rstrip(".")) for pattern in self.patterns)


class FaultDnsServer(asyncio.DatagramProtocol):
    """UDP DNS on 127.0.0.1:port, running on the run's FaultHub loop."""

    def __init__(self, hub: FaultHub, records: dict[str, list[str]], port: int = 0) -> None:
        self.hub = hub
        self.records = {name.lower().rstrip("."): addresses for name, addresses in records.items()}
        self.rules: dict[str, DnsRule] = {}
        self.rule_hits: dict[str, Counter[str]] = {}  # per rule: what it did, for its fault's report
        self.rng = random.Random()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", port))
        self.port: int = self._socket.getsockname()[1]
        self._transport: asyncio.DatagramTransport | None = None
        self._answering: set[asyncio.Task[None]] = set()  # keep tasks referenced until they finish

        async def open_endpoint() -> None:
            await hub.loop.create_datagram_endpoint(lambda: self, sock=self._socket)

        hub.run(open_endpoint())
        hub.closers.append(self.close)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, rule_id: str, rule: DnsRule, seed: int | None = None) -> None:
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = DNSRecord.parse(data)
        except Exception:  # not DNS: ignore, as a real server would
            return
        task = asyncio.ensure_future(self._answer(query, addr))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, query: DNSRecord, addr: tuple[str, int]) -> None:
        name = str(query.q.qname).lower().rstrip(".")
        reply = query.reply()
        spoofed: tuple[str, ...] = ()
        for rule_id, rule in list(self.rules.items()):
            if not rule.matches(name):
                continue
            hits = self.rule_hits.setdefault(rule_id, Counter())
            hits["matched"] += 1
            if self.rng.random() >= rule.probability:
                continue
            if rule.kind == "error":
                if rule.rcode == "TIMEOUT":
                    hits["dropped"] += 1
                    return
                hits[rule.rcode] += 1
                reply.header.rcode = RCODES[rule.rcode]
                self._send(reply, addr)
                return
            if rule.kind == "delay":
                hits["delayed"] += 1
                await asyncio.sleep(rule.delay)
            elif rule.kind == "spoof":
                hits["spoofed"] += 1
                spoofed = rule.addresses
        addresses = list(spoofed) or await self._resolve(name)
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        else:
            for address in addresses:
                record = _record(address, query.q.qtype)
                if record is not None:
                    reply.add_answer(
                        RR(query.q.qname, QTYPE.reverse[type(record).__name__], rdata=record, ttl=DEFAULT_TTL)
                    )
        self._send(reply, addr)

    async def _resolve(self, name: str) -> list[str] | None:
        """The run's own names first, then the system resolver; None means no such name."""
        if name in self.records:
            return self.records[name]
        if name == DNS_ZONE or name.endswith("." + DNS_ZONE):
            return None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return None
        return sorted({info[4][0] for info in infos})

    def _send(self, reply: DNSRecord, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(reply.pack(), addr)

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

"""The demo frontend's DNS client: asks one DNS server over UDP and caches answers for a while.

Like many real clients it keeps a good answer for `cache_seconds`; with `serve_stale` it also
falls back on an expired answer when the server fails, so a DNS outage can go unnoticed.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

from dnslib import QTYPE, RCODE, DNSRecord


class ResolveError(Exception):
    """The name could not be resolved; the message is a short reason (SERVFAIL, timeout...)."""


class CachingResolver:
    def __init__(
        self,
        server: tuple[str, int],
        cache_seconds: float = 10.0,
        timeout: float = 0.3,
        serve_stale: bool = False,
    ) -> None:
        self.server = server
        self.cache_seconds = cache_seconds
        self.serve_stale = serve_stale  # on failure, answer with an expired entry (RFC 8767)
        self.timeout = timeout
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def resolve(self, host: str) -> str:
        """An IPv4 address for host (addresses are returned as they are)."""
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(host)
        if cached and now - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            address = self._query(host)
        except ResolveError:
            if self.serve_stale and cached:
                return cached[1]
            raise
        with self._lock:
            self._cache[host] = (now, address)
        return address

    def _query(self, host: str) -> str:
        query = DNSRecord.question(host, "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.sendto(query.pack(), self.server)
                while True:  # ignore stray datagrams that do not answer this query
                    data, _ = sock.recvfrom(4096)
                    reply = DNSRecord.parse(data)
                    if reply.header.id == query.header.id:
                        break
            except TimeoutError as error:
                raise ResolveError("dns timeout") from error
            except OSError as error:
                raise ResolveError(f"dns {type(error).__name__}") from error
        if reply.header.rcode != RCODE.NOERROR:
            raise ResolveError(f"dns {RCODE.get(reply.header.rcode)}")
        for record in reply.rr:
            if record.rtype == QTYPE.A:
                return str(record.rdata)
        raise ResolveError("dns no address")

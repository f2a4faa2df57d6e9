"""Demo frontend: GET /checkout calls a backend's /work round-robin, retrying on the next one."""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chaoslib_ext.demo.httpserver import (
    DemoServer,
    QuietHandler,
    add_common_args,
    serve_until_signalled,
)
from chaoslib_ext.demo.resolver import CachingResolver, ResolveError


class BackendError(Exception):
    """A single backend call failed; the message is a short reason."""


@dataclass
class Balancer:
    """Thread-safe round-robin over backends with bounded retries."""

    backends: list[tuple[str, int]]
    timeout: float = 0.5
    retries: int = 1
    resolver: CachingResolver | None = None  # names in `backends` are resolved through it
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _next_start(self) -> int:
        with self._lock:
            start = self._counter
            self._counter = (self._counter + 1) % len(self.backends)
        return start

    def call_work(self, host: str, port: int) -> dict[str, Any]:
        """GET /work on one backend with a fresh connection; raise BackendError on failure."""
        if self.resolver is not None:
            try:
                host = self.resolver.resolve(host)
            except ResolveError as exc:
                raise BackendError(str(exc)) from exc
        conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        try:
            conn.request("GET", "/work")
            resp = conn.getresponse()
            data = resp.read()
            if not 200 <= resp.status < 300:
                raise BackendError(f"status {resp.status}")
            payload = json.loads(data)
            if not isinstance(payload, dict):
                raise BackendError("bad payload")
            return payload
        except TimeoutError as exc:
            raise BackendError("timeout") from exc
        except ConnectionRefusedError as exc:
            raise BackendError("connection refused") from exc
        except ConnectionResetError as exc:
            raise BackendError("connection reset") from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise BackendError(type(exc).__name__) from exc
        finally:
            conn.close()

    def checkout(self) -> tuple[int, dict[str, Any]]:
        """Try up to 1 + retries backends in rotation; return (status, JSON body)."""
        start = self._next_start()
        attempts = 0
        reason = "no backends"
        for i in range(1 + max(self.retries, 0)):
            host, port = self.backends[(start + i) % len(self.backends)]
            attempts += 1
            try:
                payload = self.call_work(host, port)
            except BackendError as exc:
                reason = f"{host}:{port} {exc}"
                continue
            return 200, {
                "backend": f"{host}:{port}",
                "replica": payload.get("replica"),
                "attempts": attempts,
            }
        return 502, {"error": reason, "attempts": attempts}


class FrontendHandler(QuietHandler):
    """Serves /checkout and /healthz."""

    balancer: Balancer

    def do_GET(self) -> None:
        """Route GET requests."""
        path = urlsplit(self.path).path
        if path == "/checkout":
            status, body = self.balancer.checkout()
            self.send_body(status, json.dumps(body), "application/json")
        elif path == "/healthz":
            self.send_body(200, "ok")
        else:
            self.send_body(404, "not found")


def parse_backends(spec: str) -> list[tuple[str, int]]:
    """Parse 'host:port,host:port' into a list of (host, port)."""
    backends: list[tuple[str, int]] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bad backend {item!r}, expected host:port")
        backends.append((host, int(port)))
    if not backends:
        raise ValueError("at least one backend is required")
    return backends


def build_server(host: str, port: int, balancer: Balancer) -> DemoServer:
    """Bind a frontend server (not yet serving)."""
    handler = type("BoundFrontendHandler", (FrontendHandler,), {"balancer": balancer})
    return DemoServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("--backends", required=True, help="comma-separated host:port list")
    parser.add_argument("--timeout", type=float, default=0.5, help="per-call timeout (s)")
    parser.add_argument("--retries", type=int, default=1, help="extra attempts on next backends")
    parser.add_argument("--dns", help="host:port of the DNS server that resolves backend names")
    parser.add_argument("--dns-cache", type=float, default=10.0, help="seconds a DNS answer is kept")
    parser.add_argument("--dns-serve-stale", action="store_true", help="use an expired answer if DNS fails")
    args = parser.parse_args(argv)
    try:
        backends = parse_backends(args.backends)
        resolver = None
        if args.dns:
            [(dns_host, dns_port)] = parse_backends(args.dns)
            resolver = CachingResolver(
                (dns_host, dns_port), cache_seconds=args.dns_cache, serve_stale=args.dns_serve_stale
            )
    except ValueError as exc:
        parser.error(str(exc))
    balancer = Balancer(backends, timeout=args.timeout, retries=args.retries, resolver=resolver)
    return serve_until_signalled(build_server(args.host, args.port, balancer))


if __name__ == "__main__":
    sys.exit(main())

"""A userspace TCP fault proxy, in the spirit of Toxiproxy.

Each FaultProxy listens on 127.0.0.1 and forwards to one upstream address. Faults ("toxics") are
added and removed at run time and apply to connections that are already open as well as to new
ones. With no toxic, bytes are copied untouched. All proxies of a run share one asyncio loop in a
background thread (FaultHub), so the engine's thread never blocks on network I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

CHUNK = 64 * 1024
UPSTREAM, DOWNSTREAM = "upstream", "downstream"  # client -> server, server -> client


@dataclass(frozen=True)
class Toxic:
    """One fault on a proxy. `direction` is upstream, downstream or both."""

    kind: str  # latency | loss | reset | bandwidth | partition
    direction: str = "both"
    delay: float = 0.0  # seconds (latency)
    jitter: float = 0.0  # seconds (latency)
    distribution: str = "uniform"  # uniform | normal (latency jitter)
    probability: float = 1.0  # loss, reset: share of connections hit
    rate: float = 0.0  # bytes per second (bandwidth)
    mode: str = "refuse"  # partition: refuse (reset at once) | blackhole (swallow silently)

    def applies(self, direction: str) -> bool:
        return self.direction in ("both", direction)


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    blackholed: int = 0
    reset: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(eq=False)  # identity semantics: connections live in a set
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    decided: set[str] = field(default_factory=set)  # toxics already rolled for this connection
    blackholed: bool = False


class FaultProxy:
    """127.0.0.1:listen_port -> upstream, with toxics that can change at any time."""

    def __init__(self, name: str, upstream: tuple[str, int], hub: FaultHub, listen_port: int = 0) -> None:
        self.name = name
        self.upstream = upstream
        self.hub = hub
        self.toxics: dict[str, Toxic] = {}
        self.stats = ProxyStats()
        self.rng = random.Random()
        self._connections: set[_Connection] = set()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", listen_port))
        self._socket.listen(256)
        self._socket.setblocking(False)
        self.port: int = self._socket.getsockname()[1]
        self._server: asyncio.base_events.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self._socket)

    def add(self, toxic_id: str, toxic: Toxic, seed: int | None = None) -> None:
        """Start a toxic; a refusing partition also cuts the connections that are open now."""

        def install() -> None:
            if seed is not None:
                self.rng.seed(seed)
            self.toxics[toxic_id] = toxic
            if toxic.kind == "partition" and toxic.mode == "refuse":
                for connection in list(self._connections):
                    self._reset(connection)

        self.hub.call(install)

    def remove(self, toxic_id: str) -> None:
        self.hub.call(lambda: self.toxics.pop(toxic_id, None))

    def _active(self, direction: str) -> list[tuple[str, Toxic]]:
        return [(key, t) for key, t in self.toxics.items() if t.applies(direction)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        _no_delay(writer)
        self.stats.connections += 1
        self._connections.add(connection)
        try:
            if self._refused(connection) or self._rolled(connection, UPSTREAM):
                return
            if connection.blackholed:  # swallow what the client sends until it gives up
                while await reader.read(CHUNK):
                    pass
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self._reset(connection)
                return
            connection.server = server_writer
            _no_delay(server_writer)
            await asyncio.gather(
                self._pump(reader, server_writer, connection, UPSTREAM),
                self._pump(server_reader, writer, connection, DOWNSTREAM),
            )
        finally:
            self._connections.discard(connection)
            for stream in (connection.server, writer):
                if stream is not None:
                    stream.close()

    def _refused(self, connection: _Connection) -> bool:
        for _, toxic in self._active(UPSTREAM):
            if toxic.kind == "partition" and toxic.mode == "refuse":
                self.stats.refused += 1
                self._reset(connection)
                return True
        return False

    def _rolled(self, connection: _Connection, direction: str) -> bool:
        """Loss and reset are decided once per connection and toxic; True if the connection is gone."""
        for key, toxic in self._active(direction):
            if toxic.kind not in ("loss", "reset") or key in connection.decided:
                continue
            connection.decided.add(key)
            if self.rng.random() >= toxic.probability:
                continue
            if toxic.kind == "reset":
                self.stats.reset += 1
                self._reset(connection)
                return True
            if not connection.blackholed:
                self.stats.blackholed += 1
                connection.blackholed = True
        return False

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        connection: _Connection,
        direction: str,
    ) -> None:
        """Read as fast as data comes; a writer task sends each chunk when it is due, in order."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        writer = asyncio.ensure_future(self._write(queue, sink, direction))
        last_due = 0.0
        try:
            while data := await source.read(CHUNK):
                if self._rolled(connection, direction):
                    break
                if connection.blackholed or self._swallowed(direction):
                    continue
                last_due = self._due(len(data), direction, last_due)
                queue.put_nowait((last_due, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait(None)
        await writer

    async def _write(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], sink: asyncio.StreamWriter, direction: str
    ) -> None:
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if sink.is_closing():
                    return
                sink.write(data)
                await sink.drain()
                if direction == UPSTREAM:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
            if sink.can_write_eof() and not sink.is_closing():
                sink.write_eof()
        except (ConnectionError, OSError):
            pass

    def _swallowed(self, direction: str) -> bool:
        return any(t.kind == "partition" and t.mode == "blackhole" for _, t in self._active(direction))

    def _due(self, size: int, direction: str, last_due: float) -> float:
        """When a chunk arriving now may leave: after its latency, after the chunk before it, and
        after its own transmission time at the bandwidth limit."""
        now = time.monotonic()
        due = now
        for _, toxic in self._active(direction):
            if toxic.kind == "latency":
                due = max(due, now + self._latency(toxic))
        due = max(due, last_due)
        for _, toxic in self._active(direction):
            if toxic.kind == "bandwidth" and toxic.rate > 0:
                due += size / toxic.rate
        return due

    def _latency(self, toxic: Toxic) -> float:
        if toxic.jitter <= 0:
            return toxic.delay
        if toxic.distribution == "normal":
            return max(0.0, self.rng.gauss(toxic.delay, toxic.jitter))
        return max(0.0, toxic.delay + self.rng.uniform(-toxic.jitter, toxic.jitter))

    def _reset(self, connection: _Connection) -> None:
        """Close with RST (SO_LINGER 0), as a refused or reset TCP connection would look."""
        for stream in (connection.client, connection.server):
            if stream is None or stream.is_closing():
                continue
            sock = stream.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.transport.abort()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            self._reset(connection)
        self._socket.close()


def _no_delay(stream: asyncio.StreamWriter) -> None:
    """Send each chunk at once: with Nagle's algorithm, a delayed chunk waits for an ACK that the
    peer delays too (about 40 ms on Linux), which would add latency nobody asked for."""
    sock = stream.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class FaultHub:
    """Owns the event loop thread shared by the fault proxies and the fault DNS server of a run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.proxies: list[FaultProxy] = []
        self.closers: list[Callable[[], None]] = []  # other servers on this loop (the DNS server)
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-proxies", daemon=True)
        self._thread.start()

    def proxy(self, name: str, upstream: tuple[str, int], listen_port: int = 0) -> FaultProxy:
        proxy = FaultProxy(name, upstream, self, listen_port)
        self.run(proxy._serve())
        self.proxies.append(proxy)
        return proxy

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def call(self, function: Any) -> Any:
        async def wrapper() -> Any:
            return function()

        return self.run(wrapper())

    def stop(self) -> None:
        """Close every proxy and every connection through them, then end the loop thread."""
        if not self._thread.is_alive():
            return

        async def shut_down() -> None:
            for proxy in self.proxies:
                await proxy._close()
            for close in self.closers:
                close()
            # Connections were aborted, so their handlers end on their own; cancelling them instead
            # makes Python 3.11's stream callback log a spurious error. Only stragglers are cancelled.
            pending = {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}
            if pending:
                _, stragglers = await asyncio.wait(pending, timeout=2)
                for task in stragglers:
                    task.cancel()

        self.run(shut_down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

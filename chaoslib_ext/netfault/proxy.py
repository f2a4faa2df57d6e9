"""A userspace TCP fault proxy, in the spirit of Toxiproxy.

Each FaultProxy listens on 127.0.0.1 and forwards to one upstream address. Faults ("toxics": the
network-* kinds' own parameters) are
added and removed at run time and apply to connections that are already open as well as to new
ones. With no toxic, bytes are copied untouched. All proxies of a run share one asyncio loop in a
background thread (FaultHub), so the engine's thread never blocks on network I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chaoslib_ext.faults.base import TrafficFault
from chaoslib_ext.faults.network_bandwidth import NetworkBandwidth
from chaoslib_ext.faults.network_latency import NetworkLatency
from chaoslib_ext.faults.network_loss import NetworkLoss
from chaoslib_ext.faults.network_partition import NetworkPartition
from chaoslib_ext.faults.network_reset import NetworkReset

CHUNK = 64 * 1024
MAX_QUEUED_CHUNKS = 16  # at most 1 MiB (16 slices) waits in a proxy per direction and connection
HOLD_POLL_SECONDS = 0.05
FDS_KEPT_FREE = 256  # for the ledger, logs, probes and Locust's pipe: proxied connections never take them
UPSTREAM, DOWNSTREAM = "upstream", "downstream"  # client -> server, server -> client

_T = TypeVar("_T")


@dataclass
class ProxyStats:
    """What a proxy did; `by_toxic` counts, per toxic id, the connections it refused, blackholed
    or reset, so that each fault reports its own effect."""

    connections: int = 0
    capped: int = 0  # connections refused because the run's descriptors would have run out
    by_toxic: dict[str, Counter[str]] = field(default_factory=dict)

    def hit(self, toxic_id: str, what: str) -> None:
        self.by_toxic.setdefault(toxic_id, Counter())[what] += 1


@dataclass(eq=False)  # identity semantics: connections live in a set
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    decided: set[str] = field(default_factory=set)  # toxics already rolled for this connection
    blackholed_by: str | None = None  # the loss toxic that silently dropped this connection
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class FaultProxy:
    """127.0.0.1:listen_port -> upstream, with toxics that can change at any time. With several
    upstreams, each new connection goes to the next one (round robin, as a Kubernetes Service
    spreads connections over its pods)."""

    def __init__(
        self,
        name: str,
        upstream: tuple[str, int],
        hub: FaultHub,
        listen_port: int = 0,
        *more: tuple[str, int],
    ) -> None:
        self.name = name
        self.upstream = upstream
        self.upstreams = (upstream, *more)
        self._turn = 0
        self.hub = hub
        self.toxics: dict[str, TrafficFault] = {}
        self.stats = ProxyStats()
        self.rng = random.Random()
        self._connections: set[_Connection] = set()
        self._links: dict[str, asyncio.Lock] = {}  # per direction: one piece at a time on a limited link
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

    def connections_seen(self) -> int:
        """How many connections the proxy has accepted so far (read on its own loop thread)."""
        return self.hub.call(lambda: self.stats.connections)

    def connections_open(self) -> int:
        """How many connections go through the proxy right now (keep-alive clients hold theirs)."""
        return self.hub.call(lambda: len(self._connections))

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self._socket)

    def add(self, toxic_id: str, toxic: TrafficFault, seed: int | None = None) -> None:
        """Start a toxic; a refusing partition also cuts the connections that are open now."""

        def install() -> None:
            if seed is not None:
                self.rng.seed(seed)
            self.toxics[toxic_id] = toxic
            if isinstance(toxic, NetworkPartition) and toxic.mode == "refuse":
                for connection in list(self._connections):
                    self.stats.hit(toxic_id, "refused")
                    self._reset(connection)

        self.hub.call(install)

    def remove(self, toxic_id: str) -> dict[str, int]:
        """End a toxic; connections it silently dropped are reset now, so that their clients
        reconnect instead of waiting forever. Returns what the toxic did."""

        def uninstall() -> dict[str, int]:
            self.toxics.pop(toxic_id, None)
            for connection in list(self._connections):
                if connection.blackholed_by == toxic_id:
                    self._reset(connection)
            return dict(self.stats.by_toxic.pop(toxic_id, Counter()))

        return self.hub.call(uninstall)

    def _active(self, direction: str) -> list[tuple[str, TrafficFault]]:
        return [(key, t) for key, t in self.toxics.items() if t.applies(direction)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        _no_delay(writer)
        self.stats.connections += 1
        if self.hub.open_connections >= self.hub.capacity:  # each one takes two descriptors
            self.stats.capped += 1
            self._reset(connection)
            writer.close()
            return
        self.hub.open_connections += 1
        self._connections.add(connection)
        try:
            if self._refused(connection) or self._rolled(connection, UPSTREAM):
                return
            if connection.blackholed_by is not None:
                await self._hold(connection)
                return
            try:
                upstream = self.upstreams[self._turn % len(self.upstreams)]
                self._turn += 1
                server_reader, server_writer = await asyncio.open_connection(*upstream)
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
            self.hub.open_connections -= 1
            for stream in (connection.server, writer):
                if stream is not None:
                    stream.close()

    async def _hold(self, connection: _Connection) -> None:
        """A dropped connection: read nothing, answer nothing, until a revert (or the end) resets it,
        or until its client gives up on it (which a real lost connection would not see either, but
        which must not keep its descriptors forever)."""
        while not connection.ended.is_set():
            if _hung_up(connection.client):
                return
            try:
                await asyncio.wait_for(connection.ended.wait(), HOLD_POLL_SECONDS * 4)
            except TimeoutError:
                continue

    def _refused(self, connection: _Connection) -> bool:
        """A refusing partition refuses every new connection, whatever its direction says."""
        for key, toxic in self.toxics.items():
            if isinstance(toxic, NetworkPartition) and toxic.mode == "refuse":
                self.stats.hit(key, "refused")
                self._reset(connection)
                return True
        return False

    def _rolled(self, connection: _Connection, direction: str) -> bool:
        """Loss and reset are decided once per connection and toxic; True if the connection is gone."""
        for key, toxic in self._active(direction):
            if not isinstance(toxic, NetworkLoss | NetworkReset) or key in connection.decided:
                continue
            connection.decided.add(key)
            if self.rng.random() >= toxic.probability:
                continue
            if isinstance(toxic, NetworkReset):
                self.stats.hit(key, "reset")
                self._reset(connection)
                return True
            if connection.blackholed_by is None:
                self.stats.hit(key, "blackholed")
                connection.blackholed_by = key
        return False

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        connection: _Connection,
        direction: str,
    ) -> None:
        """Read, and hand each chunk to a writer task that sends it when it is due, in order. The
        queue is bounded, so a slow (shaped) side makes the reader stop: TCP then pushes back on
        the sender, as a real slow link would. A blackhole stops the reading altogether, so the
        data waits in TCP's buffers and arrives, late but whole, when the partition heals."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=MAX_QUEUED_CHUNKS)
        writer = asyncio.ensure_future(self._write(queue, sink, connection, direction))
        last_due = 0.0
        try:
            while not writer.done():
                while self._swallowed(direction) or connection.blackholed_by is not None:
                    if connection.client.is_closing() or _hung_up(connection.client):
                        self._reset(connection)  # the client left: nobody will read what is held
                        return
                    await asyncio.sleep(HOLD_POLL_SECONDS)
                data = await source.read(CHUNK)
                if not data or self._rolled(connection, direction):
                    break
                while self._swallowed(direction):  # partitioned while this chunk was on its way
                    await asyncio.sleep(HOLD_POLL_SECONDS)
                piece = self._piece_size(direction)
                for offset in range(0, len(data), piece):
                    part = data[offset : offset + piece]
                    last_due = self._due(direction, last_due)
                    if not await _enqueue(queue, (last_due, part), writer):
                        return
        except (ConnectionError, OSError):
            pass
        finally:
            if not writer.done():
                await queue.put(None)
            await writer

    async def _write(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        sink: asyncio.StreamWriter,
        connection: _Connection,
        direction: str,
    ) -> None:
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._transmit(len(data), direction)
                if sink.is_closing():
                    break
                sink.write(data)
                await sink.drain()
            else:
                if sink.can_write_eof() and not sink.is_closing():
                    sink.write_eof()  # pass the half-close on
                return
        except (ConnectionError, OSError):
            pass
        self._reset(connection)  # one side is gone: end the other, do not keep reading for nobody

    async def _transmit(self, size: int, direction: str) -> None:
        """Under a bandwidth limit, a piece takes size / rate on the link, which every connection
        through this proxy shares, one piece at a time in arrival order, as on a real link. A
        connection that ends while it waits never takes its turn, so it uses no capacity."""
        rates = self._rates(direction)
        if not rates:
            return
        link = self._links.setdefault(direction, asyncio.Lock())
        async with link:
            await asyncio.sleep(size / min(rates))

    def _piece_size(self, direction: str) -> int:
        """Under a bandwidth limit, data leaves in slices of about 100 ms, so that it flows
        steadily instead of in one late burst per chunk."""
        rates = self._rates(direction)
        return CHUNK if not rates else max(1024, min(CHUNK, int(min(rates) / 10)))

    def _rates(self, direction: str) -> list[float]:
        return [t.rate for _, t in self._active(direction) if isinstance(t, NetworkBandwidth) and t.rate > 0]

    def _swallowed(self, direction: str) -> bool:
        return any(
            isinstance(t, NetworkPartition) and t.mode == "blackhole" for _, t in self._active(direction)
        )

    def _due(self, direction: str, last_due: float) -> float:
        """When a chunk arriving now may go onto the link: after its latency and after the chunk
        before it (its transmission time at a bandwidth limit is taken on the link itself)."""
        now = time.monotonic()
        due = now
        for _, toxic in self._active(direction):
            if isinstance(toxic, NetworkLatency):
                due = max(due, now + self._latency(toxic))
        return max(due, last_due)

    def _latency(self, toxic: NetworkLatency) -> float:
        if toxic.jitter <= 0:
            return toxic.delay
        if toxic.distribution == "normal":
            return max(0.0, self.rng.gauss(toxic.delay, toxic.jitter))
        return max(0.0, toxic.delay + self.rng.uniform(-toxic.jitter, toxic.jitter))

    def _reset(self, connection: _Connection) -> None:
        """Close with RST (SO_LINGER 0), as a refused or reset TCP connection would look."""
        connection.ended.set()
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


async def _enqueue(
    queue: asyncio.Queue[tuple[float, bytes] | None], item: tuple[float, bytes], writer: asyncio.Future[None]
) -> bool:
    """Wait for room in the queue, unless the writer ends first (then nobody will ever make room)."""
    put = asyncio.ensure_future(queue.put(item))
    done, _ = await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
    if put in done:
        return True
    put.cancel()
    return False


def _hung_up(stream: asyncio.StreamWriter) -> bool:
    """Whether the peer has closed its side (FIN or RST), seen without reading what it sent."""
    sock = stream.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
        self.capacity = max(64, (raise_descriptor_limit() - FDS_KEPT_FREE) // 2)  # proxied connections
        self.open_connections = 0  # across every proxy (only touched on the loop's thread)
        self.closers: list[Callable[[], None]] = []  # other servers on this loop (the DNS server)
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-proxies", daemon=True)
        self._thread.start()

    def proxy(
        self, name: str, upstream: tuple[str, int], listen_port: int = 0, *more: tuple[str, int]
    ) -> FaultProxy:
        proxy = FaultProxy(name, upstream, self, listen_port, *more)
        self.run(proxy._serve())
        self.proxies.append(proxy)
        return proxy

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def call(self, function: Callable[[], _T]) -> _T:
        async def wrapper() -> _T:
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

"""The userspace fault proxy and DNS server, measured from outside with real clients on 127.0.0.1."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import http.client
import math
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest
from conftest import HOST, Starter, free_port
from dnslib import RCODE, DNSRecord

from chaoslib_ext.faults import KINDS
from chaoslib_ext.faults.dns_delay import DnsDelay
from chaoslib_ext.faults.dns_error import DnsError
from chaoslib_ext.faults.dns_spoof import DnsSpoof
from chaoslib_ext.faults.network_bandwidth import NetworkBandwidth
from chaoslib_ext.faults.network_latency import NetworkLatency
from chaoslib_ext.faults.network_loss import NetworkLoss
from chaoslib_ext.faults.network_partition import NetworkPartition
from chaoslib_ext.netfault.dns import FaultDnsServer, RunNames, loopback_socket
from chaoslib_ext.netfault.proxy import FaultHub

TRIES = 2000
Z_999 = 3.29  # two-sided 99.9% normal quantile


def binomial_bounds(n: int, p: float) -> tuple[float, float]:
    spread = Z_999 * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


class TcpServer:
    """A plain TCP server in a thread: `echo` sends back what it gets; `stream` sends as fast as
    the socket allows and counts what it managed to send."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sent = 0
        self.listener = socket.socket()
        self.listener.bind((HOST, 0))
        self.listener.listen(1024)  # deep enough that only a fault, never a full queue, drops a SYN
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.listener.accept()
                threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            if self.mode == "echo":
                while data := connection.recv(65536):
                    connection.sendall(data)
            else:
                chunk = b"x" * 65536
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    self.sent += connection.send(chunk)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def hub():
    hub = FaultHub()
    yield hub
    hub.stop()


@pytest.fixture
def echo():
    server = TcpServer("echo")
    yield server.port
    server.close()


@pytest.fixture
def backend(start: Starter) -> int:
    _, port = start("chaoslib_ext.demo.backend", "--work-ms", "0")
    return port


def get_ms(port: int, path: str = "/work", timeout: float = 5.0) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000


def median_ms(port: int, count: int = 30) -> float:
    return statistics.median(get_ms(port) for _ in range(count))


async def _attempt(port: int, timeout: float) -> str:
    """One connection, one message to an echo server: 'ok' (echoed back), 'timeout', 'reset'
    (refused, or reset by the peer) or 'closed' (ended without an answer)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (ConnectionRefusedError, ConnectionResetError):
        return "reset"
    except TimeoutError:
        return "timeout"
    try:
        writer.write(b"ping")
        data = await asyncio.wait_for(reader.readexactly(4), timeout)
        return "ok" if data == b"ping" else "closed"
    except TimeoutError:
        return "timeout"
    except (ConnectionRefusedError, ConnectionResetError):
        return "reset"
    except (asyncio.IncompleteReadError, OSError):
        return "closed"
    finally:
        writer.close()


def attempts(port: int, count: int, timeout: float = 1.0, batch: int = 100) -> dict[str, int]:
    """`count` bounded attempts, `batch` at a time; outcome counts."""

    async def run() -> list[str]:
        outcomes: list[str] = []
        for first in range(0, count, batch):
            size = min(batch, count - first)
            outcomes += await asyncio.gather(*(_attempt(port, timeout) for _ in range(size)))
        return outcomes

    results = asyncio.run(run())
    return {kind: results.count(kind) for kind in ("ok", "timeout", "reset", "closed")}


@pytest.fixture
def file_server(tmp_path):
    """A real HTTP file server on 127.0.0.1 serving tmp_path; yields its port."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", HOST, "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not attempts_ok(port):
        assert time.monotonic() < deadline, "file server did not start"
        time.sleep(0.05)
    yield port
    server.terminate()
    server.wait(timeout=5)


def download(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()


def test_without_toxics_bytes_pass_untouched_and_no_latency_is_added(hub, tmp_path, file_server, backend):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    files = hub.proxy("files", (HOST, file_server))
    body = download(files.port, "/blob.bin")
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(blob.read_bytes()).hexdigest()
    proxy = hub.proxy("backend", (HOST, backend))
    direct, proxied = median_ms(backend), median_ms(proxy.port)
    assert proxied - direct < 3.0, (direct, proxied)


@pytest.mark.parametrize(("direction", "delay", "expected"), [("upstream", 0.1, 100), ("both", 0.06, 120)])
def test_latency_seen_by_a_client_is_what_was_asked(hub, backend, direction, delay, expected):
    proxy = hub.proxy("backend", (HOST, backend))
    baseline = median_ms(proxy.port)
    proxy.add("t", NetworkLatency(direction=direction, delay=delay))
    added = median_ms(proxy.port) - baseline
    assert abs(added - expected) <= 0.1 * expected + 2, added
    proxy.remove("t")
    assert median_ms(proxy.port) - baseline < 3.0  # back to baseline after revert


def test_latency_applies_to_connections_that_were_already_open(hub, backend):
    proxy = hub.proxy("backend", (HOST, backend))
    connection = http.client.HTTPConnection(HOST, proxy.port, timeout=5)
    connection.request("GET", "/work")
    connection.getresponse().read()
    proxy.add("t", NetworkLatency(direction="upstream", delay=0.15))
    samples = []
    for _ in range(5):  # the same keep-alive connection, opened before the fault
        started = time.perf_counter()
        connection.request("GET", "/work")
        connection.getresponse().read()
        samples.append((time.perf_counter() - started) * 1000)
    connection.close()
    assert 150 <= statistics.median(samples) <= 150 * 1.1 + 5, samples


def test_jitter_spreads_latency_around_the_delay(hub, backend):
    proxy = hub.proxy("backend", (HOST, backend))
    baseline = median_ms(proxy.port)
    proxy.add(
        "t", NetworkLatency(direction="upstream", delay=0.05, jitter=0.02, distribution="uniform"), seed=5
    )
    samples = [get_ms(proxy.port) for _ in range(60)]
    assert min(samples) >= 30  # never less than delay - jitter
    assert abs(statistics.median(samples) - baseline - 50) <= 8  # centred on the delay
    assert statistics.pstdev(samples) > 5  # uniform over +-20 ms: about 11.5 ms


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "probability", "failed"), [("loss", 0.3, "timeout"), ("reset", 0.5, "reset")]
)
def test_loss_and_reset_hit_the_asked_share_of_connections(hub, echo, kind, probability, failed):
    proxy = hub.proxy("echo", (HOST, echo))
    proxy.add("t", KINDS[f"network-{kind}"](direction="both", probability=probability), seed=1234)
    outcomes = attempts(proxy.port, TRIES, timeout=1.0)
    low, high = binomial_bounds(TRIES, probability)
    assert low <= outcomes[failed] <= high, outcomes
    assert outcomes["ok"] + outcomes[failed] == TRIES, outcomes
    proxy.remove("t")
    assert attempts(proxy.port, 100)["ok"] == 100


def test_bandwidth_limit_holds_within_15_percent(hub, tmp_path, file_server):
    (tmp_path / "blob.bin").write_bytes(b"x" * 400_000)
    proxy = hub.proxy("files", (HOST, file_server))
    proxy.add("t", NetworkBandwidth(direction="downstream", rate=200_000))
    started = time.perf_counter()
    size = len(download(proxy.port, "/blob.bin"))
    rate = size / (time.perf_counter() - started)
    assert size == 400_000
    assert abs(rate - 200_000) <= 0.15 * 200_000, rate


def test_connections_through_one_shaped_proxy_share_its_bandwidth_as_on_a_link(hub, tmp_path, file_server):
    (tmp_path / "blob.bin").write_bytes(b"x" * 200_000)
    proxy = hub.proxy("files", (HOST, file_server))
    proxy.add("t", NetworkBandwidth(direction="downstream", rate=200_000))
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        sizes = list(pool.map(lambda _: len(download(proxy.port, "/blob.bin")), range(4)))
    rate = sum(sizes) / (time.perf_counter() - started)
    assert sizes == [200_000] * 4
    assert abs(rate - 200_000) <= 0.15 * 200_000, rate  # 4 at once: the link's rate in all, not 4 times it


def attempts_ok(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=1)
        connection.request("HEAD", "/")
        ok = connection.getresponse().status < 500
        connection.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def test_partition_refuses_or_blackholes_every_attempt_then_heals(hub, echo):
    proxy = hub.proxy("echo", (HOST, echo))
    proxy.add("t", NetworkPartition(direction="both", mode="refuse"))
    assert attempts(proxy.port, 200, timeout=1.0)["reset"] == 200
    proxy.remove("t")
    proxy.add("t", NetworkPartition(direction="both", mode="blackhole"))
    assert attempts(proxy.port, 50, timeout=0.3)["timeout"] == 50
    proxy.remove("t")
    assert attempts(proxy.port, 50)["ok"] == 50


def test_a_refusing_partition_cuts_open_connections_too(hub, backend):
    proxy = hub.proxy("backend", (HOST, backend))
    connection = http.client.HTTPConnection(HOST, proxy.port, timeout=2)
    connection.request("GET", "/work")
    connection.getresponse().read()
    proxy.add("t", NetworkPartition(direction="both", mode="refuse"))
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("GET", "/work")
        connection.getresponse().read()
    connection.close()


def test_stopping_the_hub_leaves_no_listener_and_no_thread(echo):
    hub = FaultHub()
    proxy = hub.proxy("echo", (HOST, echo))
    dns = FaultDnsServer(hub, loopback_socket(), RunNames({}))
    assert attempts(proxy.port, 5)["ok"] == 5
    hub.stop()
    assert attempts(proxy.port, 5, timeout=0.5)["reset"] == 5
    assert not any(t.name == "fault-proxies" for t in threading.enumerate())
    with pytest.raises(TimeoutError):
        DNSRecord.question("x.gameday.internal").send(HOST, dns.port, timeout=0.3)


# DNS


def query(server: FaultDnsServer, name: str, timeout: float = 1.0) -> DNSRecord:
    return DNSRecord.parse(DNSRecord.question(name, "A").send(HOST, server.port, timeout=timeout))


@pytest.fixture
def dns(hub):
    return FaultDnsServer(hub, loopback_socket(), RunNames({"backend-0.gameday.internal": ["127.0.0.1"]}))


def test_dns_answers_its_names_resolves_localhost_and_never_forwards_its_zone(dns):
    assert [str(r.rdata) for r in query(dns, "backend-0.gameday.internal").rr] == ["127.0.0.1"]
    assert [str(r.rdata) for r in query(dns, "localhost").rr] == ["127.0.0.1"]
    assert query(dns, "missing.gameday.internal").header.rcode == RCODE.NXDOMAIN


@pytest.mark.parametrize("rcode", ["SERVFAIL", "NXDOMAIN", "REFUSED"])
def test_dns_error_is_seen_as_the_right_rcode_and_other_names_still_resolve(dns, rcode):
    dns.add("f", DnsError(patterns=("*.gameday.internal",), rcode=rcode))
    assert RCODE.get(query(dns, "backend-0.gameday.internal").header.rcode) == rcode
    assert [str(r.rdata) for r in query(dns, "localhost").rr] == ["127.0.0.1"]
    dns.remove("f")
    assert query(dns, "backend-0.gameday.internal").header.rcode == RCODE.NOERROR


@pytest.mark.slow
def test_dns_error_probability_is_within_the_binomial_bound(dns):
    dns.add("f", DnsError(patterns=("backend-*",), rcode="SERVFAIL", probability=0.5), seed=99)
    failures = sum(
        query(dns, "backend-0.gameday.internal").header.rcode == RCODE.SERVFAIL for _ in range(TRIES)
    )
    low, high = binomial_bounds(TRIES, 0.5)
    assert low <= failures <= high, failures


def test_dns_timeout_drops_the_query(dns):
    dns.add("f", DnsError(patterns=("backend-*",), rcode="TIMEOUT"))
    with pytest.raises(TimeoutError):
        query(dns, "backend-0.gameday.internal", timeout=0.5)
    assert query(dns, "localhost").header.rcode == RCODE.NOERROR


def test_dns_delay_and_spoof(dns):
    dns.add("d", DnsDelay(patterns=("backend-*",), delay=0.2))
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        query(dns, "backend-0.gameday.internal")
        samples.append((time.perf_counter() - started) * 1000)
    assert abs(statistics.median(samples) - 200) <= 0.1 * 200 + 5, samples
    assert dns.remove("d") == {"matched": 5, "delayed": 5}
    dns.add("s", DnsSpoof(patterns=("backend-*",), addresses=("127.0.0.9",)))
    assert [str(r.rdata) for r in query(dns, "backend-0.gameday.internal").rr] == ["127.0.0.9"]


def test_a_healed_blackhole_delivers_the_held_bytes_late_but_whole(hub, echo):
    proxy = hub.proxy("echo", (HOST, echo))
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        client.sendall(b"A")
        assert client.recv(16) == b"A"
        proxy.add("t", NetworkPartition(direction="upstream", mode="blackhole"))
        client.sendall(b"B")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(16)
        proxy.remove("t")
        client.settimeout(5)
        client.sendall(b"C")
        received = b""
        while len(received) < 2:
            received += client.recv(16)
        assert received == b"BC"


def test_a_shaped_link_pushes_back_on_the_sender_and_a_closed_side_ends_the_connection(hub):
    server = TcpServer("stream")
    proxy = hub.proxy("stream", (HOST, server.port))
    proxy.add("t", NetworkBandwidth(direction="downstream", rate=10_000))
    try:
        with socket.create_connection((HOST, proxy.port), timeout=5) as client:
            client.recv(1000)
        deadline = time.monotonic() + 10
        while hub.call(lambda: len(proxy._connections)) > 0:  # the proxy lets go of it ...
            assert time.monotonic() < deadline, "the proxy kept a connection whose client had gone"
            time.sleep(0.05)
        assert server.sent < 20 * 1024 * 1024, server.sent  # ... and the sender felt the limit meanwhile
    finally:
        server.close()


def test_reverting_loss_resets_the_connections_it_dropped(hub, echo):
    proxy = hub.proxy("echo", (HOST, echo))
    proxy.add("t", NetworkLoss(direction="both", probability=1.0))
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        client.sendall(b"lost")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(16)
        assert proxy.remove("t") == {"blackholed": 1}
        client.settimeout(5)
        with pytest.raises(ConnectionResetError):
            client.recv(16)


def test_a_refusing_partition_refuses_new_connections_whatever_its_direction(hub, echo):
    proxy = hub.proxy("echo", (HOST, echo))
    proxy.add("t", NetworkPartition(direction="downstream", mode="refuse"))
    with (
        pytest.raises(ConnectionResetError),  # at connect, or at the first read
        socket.create_connection((HOST, proxy.port), timeout=5) as client,
    ):
        client.sendall(b"x")
        client.recv(16)
    assert proxy.remove("t") == {"refused": 1}


def test_connections_held_by_loss_or_blackhole_are_let_go_when_their_clients_leave(hub, echo):
    proxy = hub.proxy("echo", (HOST, echo))
    proxy.add("loss", NetworkLoss(direction="both", probability=1.0))
    for _ in range(300):  # clients that connect, get nothing, and give up
        with socket.create_connection((HOST, proxy.port), timeout=5) as client:
            client.sendall(b"hello")
    deadline = time.monotonic() + 10
    while hub.call(lambda: hub.open_connections) > 0:
        assert time.monotonic() < deadline, f"{hub.call(lambda: hub.open_connections)} connections still held"
        time.sleep(0.05)
    proxy.remove("loss")
    proxy.add("hole", NetworkPartition(direction="both", mode="blackhole"))
    clients = [socket.create_connection((HOST, proxy.port), timeout=5) for _ in range(50)]
    wait(lambda: hub.call(lambda: hub.open_connections) == 50)
    for client in clients:
        client.close()
    wait(lambda: hub.call(lambda: hub.open_connections) == 0)


def test_connections_over_what_the_descriptors_allow_are_refused_and_counted(hub, echo):
    proxy = hub.proxy("echo", (HOST, echo))
    proxy.add("loss", NetworkLoss(direction="both", probability=1.0))  # every connection is held
    hub.capacity = 40
    clients = [client for _ in range(60) if (client := connect_or_reset(proxy.port))]
    try:
        wait(lambda: proxy.stats.capped == 20)
        assert hub.call(lambda: hub.open_connections) == 40
    finally:
        for client in clients:
            client.close()


def connect_or_reset(port: int) -> socket.socket | None:
    """A connection, or None when the proxy refused it (reset) before connect() returned: on
    loopback the reset of a capped connection can beat the client's own return from connect()."""
    try:
        return socket.create_connection((HOST, port), timeout=5)
    except ConnectionResetError:
        return None


def wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)

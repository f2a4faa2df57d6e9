"""Guards judged against real per-second samples and real probes (no load, no faults here: the
whole-run behaviour is in test_end_to_end.py)."""

from __future__ import annotations

import shutil
import socketserver
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port

from chaoslib_ext.guards import GuardWatch
from chaoslib_ext.prometheus import QueryFailed, instant_query
from chaoslib_ext.samples import Aggregate, EndpointSample, SampleStore
from chaoslib_ext.spec.model import Guard, HttpProbe

NOW = 1_000_000.0  # an epoch second; the seconds before NOW - 0.5 are complete


def second(ok: int, failed: int, latency_ms: float = 10.0) -> Aggregate:
    sample = EndpointSample()
    for _ in range(ok):
        sample.ok.record_ms(latency_ms)
    for _ in range(failed):
        sample.failed.record_ms(latency_ms)
    return Aggregate(endpoints={"GET /": sample})


def store(*seconds: Aggregate | None) -> SampleStore:
    """The given seconds, the last one ending at NOW."""
    samples = SampleStore()
    for offset, aggregate in enumerate(reversed(seconds), start=1):
        if aggregate is not None:
            samples.add(int(NOW) - offset, aggregate)
    return samples


def check(guard: Guard, samples: SampleStore, now: float = NOW + 0.6):
    return GuardWatch((guard,), samples, started_at=NOW - 100).check(now, since=NOW - 50)


def test_error_rate_trips_only_when_every_second_of_its_window_is_over_the_limit():
    guard = Guard("error_rate", limit=0.5, seconds=2)
    assert check(guard, store(second(10, 0), second(4, 6))) is None  # one bad second of two
    trip = check(guard, store(second(4, 6), second(3, 7)))
    assert trip is not None and trip.guard == "error rate above 50% for 2s"
    assert trip.observed == "60%, 70% in the last 2 second(s)" and trip.breach_at == NOW
    assert check(guard, store(second(4, 6), second(5, 5))) is None  # exactly at the limit is fine
    assert check(guard, store(second(4, 6), None)) is None  # a silent second proves nothing
    assert check(guard, store(second(4, 6), second(3, 7)), now=NOW + 0.4) is None  # NOW-1 not complete


def test_latency_guard_reads_the_percentile_of_each_second():
    guard = Guard("latency", limit=0.2, percentile="p95", seconds=1)
    assert check(guard, store(second(100, 0, latency_ms=150))) is None
    trip = check(guard, store(second(100, 0, latency_ms=300)))
    assert trip is not None and trip.guard == "p95 latency above 200ms for 1s"


def test_guards_ignore_seconds_before_the_load_started():
    guard = Guard("error_rate", limit=0.1, seconds=1)
    watch = GuardWatch((guard,), store(second(0, 10)), started_at=NOW - 100)
    assert watch.check(NOW + 0.6, since=NOW) is None
    assert watch.check(NOW + 0.6, since=NOW - 1) is not None


def test_deadline_trips_once_the_run_has_lasted_that_long():
    watch = GuardWatch((Guard("deadline", limit=30.0),), SampleStore(), started_at=NOW)
    assert watch.check(NOW + 29.9, since=NOW) is None
    trip = watch.check(NOW + 30.2, since=NOW)
    assert trip is not None and trip.breach_at == NOW + 30 and trip.detected_at == NOW + 30.2


class Flaky(BaseHTTPRequestHandler):
    """Fails every other request: never two failures in a row."""

    served = 0

    def do_GET(self) -> None:
        Flaky.served += 1
        self.send_response(500 if Flaky.served % 2 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_probe_guard_needs_its_failures_in_a_row():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    guard = Guard("probe", probe=HttpProbe(url=url, timeout=1.0), every=0.02, failures=2)
    watch = GuardWatch((guard,), SampleStore(), started_at=time.time())
    watch.start_watching()
    try:
        deadline = time.monotonic() + 20
        while Flaky.served < 20:
            assert watch.check(time.time(), since=0) is None, "tripped on failures that were not in a row"
            assert time.monotonic() < deadline, "the probe did not run 20 times"
            time.sleep(0.01)
    finally:
        watch.stop()
        server.shutdown()
    assert watch.check(time.time(), since=0) is None


def test_a_probe_guard_trips_after_its_failures_in_a_row():
    closed = f"http://127.0.0.1:{free_port()}/"  # nothing listens: every probe fails at once
    guard = Guard("probe", probe=HttpProbe(url=closed, timeout=1.0), every=0.05, failures=3)
    watch = GuardWatch((guard,), SampleStore(), started_at=time.time())
    watch.start_watching()
    try:
        deadline = time.monotonic() + 10
        while (trip := watch.check(time.time(), since=0)) is None:
            assert time.monotonic() < deadline, "the probe guard never tripped"
            time.sleep(0.02)
        assert trip.guard.startswith("probe http GET") and "3 times in a row" in trip.guard
        assert trip.detected_at >= trip.breach_at
    finally:
        watch.stop()


class Exporter(BaseHTTPRequestHandler):
    """/metrics with one gauge whose value the test sets; counts Prometheus's scrapes."""

    value = 1.0
    scrapes = 0

    def do_GET(self) -> None:
        Exporter.scrapes += 1
        body = f"gameday_test_errors {Exporter.value}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A real Prometheus on 127.0.0.1, scraping a test exporter every second."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: test\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_address[1]}']}}]\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # ready, and the gauge scraped at least once
            try:
                if instant_query(url, "gameday_test_errors", timeout=1):
                    break
            except QueryFailed:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "Prometheus did not come up"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        exporter.shutdown()


def test_a_prometheus_guard_trips_only_once_its_query_has_been_over_the_limit_long_enough(prometheus):
    Exporter.value = 1.0
    guard = Guard("prometheus", limit=5.0, seconds=2, every=0.2, url=prometheus, query="gameday_test_errors")
    watch = GuardWatch((guard,), SampleStore(), started_at=time.time())
    watch.start_watching()
    try:
        seen = Exporter.scrapes
        deadline = time.monotonic() + 30
        while Exporter.scrapes < seen + 3:  # three scrapes of a value under the limit, watched
            assert watch.check(time.time(), since=0) is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        Exporter.value, raised = 10.0, time.time()
        while (trip := watch.check(time.time(), since=0)) is None:
            assert time.monotonic() < deadline + 30, "the guard never tripped"
            time.sleep(0.05)
    finally:
        watch.stop()
    assert trip.guard == "prometheus gameday_test_errors above 5 for 2s"
    assert trip.observed == "gameday_test_errors = 10"
    assert trip.breach_at >= raised + 2  # over the limit for its 2 s, not before


class Garbage(socketserver.BaseRequestHandler):
    """Speaks no HTTP at all."""

    def handle(self) -> None:
        self.request.sendall(b"\x00\xffnot http\r\n\r\n")


@pytest.mark.parametrize("answer", ["refused query", "closed port", "not http", "no series under a floor"])
def test_a_prometheus_guard_that_cannot_read_its_query_stops_the_run(prometheus, answer):
    with pytest.raises(QueryFailed, match=r"Prometheus refused the query: .*parse error"):
        instant_query(prometheus, "sum(", timeout=5)
    garbage = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=garbage.serve_forever, daemon=True).start()
    url, query, below = {
        "refused query": (prometheus, "sum(", False),
        "closed port": (f"http://127.0.0.1:{free_port()}", "up", False),
        "not http": (f"http://127.0.0.1:{garbage.server_address[1]}", "up", False),
        "no series under a floor": (prometheus, "no_such_metric", True),
    }[answer]
    guard = Guard("prometheus", limit=5.0, seconds=1, every=0.2, url=url, query=query, below=below)
    watch = GuardWatch((guard,), SampleStore(), started_at=time.time())
    watch.start_watching()
    try:
        deadline = time.monotonic() + 20
        while (trip := watch.check(time.time(), since=0)) is None:
            assert time.monotonic() < deadline, "the blind guard never tripped"
            time.sleep(0.05)
    finally:
        watch.stop()
        garbage.shutdown()
    expected = {
        "refused query": "Prometheus refused the query",
        "closed port": f"cannot query Prometheus at {url}",
        "not http": f"cannot query Prometheus at {url}",
        "no series under a floor": "no_such_metric = nan",
    }[answer]
    assert trip.observed.startswith(expected), trip.observed

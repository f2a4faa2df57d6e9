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
from simulation import T0, Answer, simulate

from chaoslib_ext.engine.guards import GuardWatch, MetricWatch
from chaoslib_ext.engine.prometheus import QueryFailed, instant_query
from chaoslib_ext.measure.samples import Aggregate, EndpointSample, LoadSecond, SampleStore
from chaoslib_ext.spec.model import (
    DeadlineGuard,
    ErrorRateGuard,
    HttpProbe,
    LatencyGuard,
    ProbeGuard,
    PrometheusGuard,
)

NOW = 1_000_000.0  # an epoch second


def second(ok: int, failed: int, latency_ms: float = 10.0) -> LoadSecond:
    """A second of the run in which `ok` and `failed` requests finished, nobody left waiting."""
    sample = EndpointSample()
    for _ in range(ok):
        sample.ok.record_ms(latency_ms)
    for _ in range(failed):
        sample.failed.record_ms(latency_ms)
    return LoadSecond(Aggregate(endpoints={"GET /": sample}), 0, None)


def silent(waiting_since: float | None = None, waiting: int = 0) -> LoadSecond:
    return LoadSecond(Aggregate(), waiting, waiting_since)


def trips(guard: ErrorRateGuard | LatencyGuard, *seconds: LoadSecond, max_stall: float = 1.0):
    """Feed the seconds (from NOW on) to one guard in order; the trip, if any."""
    watch = MetricWatch(guard, max_stall)
    for offset, happened in enumerate(seconds):
        trip = watch.observe(int(NOW) + offset, happened)
        if trip is not None:
            return trip
    return None


def test_error_rate_trips_after_its_seconds_of_bad_evidence():
    guard = ErrorRateGuard(limit=0.5, seconds=2)
    assert trips(guard, second(10, 0), second(4, 6)) is None  # one bad second of two
    trip = trips(guard, second(4, 6), second(3, 7))
    assert trip is not None and trip.guard == "error rate above 50% for 2s"
    assert trip.observed == "60%, 70% in 2 second(s) of load" and trip.breach_at == NOW + 2
    assert trips(guard, second(4, 6), second(5, 5)) is None  # exactly at the limit is fine
    assert trips(guard, second(4, 6), second(9, 1), second(4, 6)) is None  # a good second in between


def test_a_second_with_nothing_finished_and_nobody_waiting_long_proves_nothing_either_way():
    guard = ErrorRateGuard(limit=0.5, seconds=2)
    assert trips(guard, second(4, 6), silent(), second(3, 7)) is not None  # sparse completions still trip
    assert trips(guard, second(4, 6), silent(NOW + 1.5, waiting=4), second(9, 1)) is None


def test_users_waiting_with_no_answer_is_a_breach_after_the_grace():
    guard = ErrorRateGuard(limit=0.5, seconds=2)
    # 4 requests sent at +0.2s still waiting at the end of +1s and +2s: nothing answered
    trip = trips(guard, second(10, 0), silent(NOW + 0.2, 4), silent(NOW + 0.2, 4), max_stall=1.0)
    assert trip is not None and "no answer (4 waiting, for 1.8s)" in trip.observed
    assert trips(guard, second(10, 0), silent(NOW + 0.2, 4), silent(NOW + 0.2, 4), max_stall=5.0) is None


def test_latency_guard_reads_the_percentile_of_each_second():
    guard = LatencyGuard(percentile="p95", limit=0.2, seconds=1)
    assert trips(guard, second(100, 0, latency_ms=150)) is None
    trip = trips(guard, second(100, 0, latency_ms=300))
    assert trip is not None and trip.guard == "p95 latency above 200ms for 1s"


def test_sparse_completions_trip_a_two_second_error_rate_guard(monkeypatch):
    # 4 users; from +10s the front answers 502 after 2s: most seconds see no answer at all
    def service(sent: float) -> Answer:
        return Answer(2.0, ok=False) if sent >= T0 + 10 else Answer(0.01)

    run = simulate(monkeypatch, service, users=4, interval=0.1, seconds=20)
    watch = MetricWatch(ErrorRateGuard(limit=0.5, seconds=2), max_stall=1.0)
    trip = None
    for offset in range(20):
        happened = run.samples.second(int(T0) + offset)
        assert happened is not None  # the recorder delivers every second, answers or not
        trip = watch.observe(int(T0) + offset, happened)
        if trip is not None:
            break
    assert trip is not None
    first_failures = T0 + 12  # the first 502s come back 2s after the breach began
    assert first_failures <= trip.breach_at <= first_failures + 2


def test_the_guard_thread_sees_every_second_even_a_breach_that_is_already_over():
    # seconds +3 and +4 were bad and are over; the watch starts late, as an engine busy reverting would
    samples = SampleStore()
    for offset in range(10):
        happened = second(3, 7) if offset in (3, 4) else second(10, 0)
        samples.add_second(int(NOW) + offset, happened)
    watch = GuardWatch((ErrorRateGuard(limit=0.5, seconds=2),), samples, started_at=NOW)
    watch.start_watching(since=NOW)
    try:
        deadline = time.monotonic() + 10
        while (trip := watch.check(time.time())) is None:
            assert time.monotonic() < deadline, "the guard thread never tripped"
            time.sleep(0.01)
    finally:
        watch.stop()
    assert trip.breach_at == NOW + 5


def test_guards_ignore_seconds_before_the_load_started():
    samples = SampleStore()
    samples.add_second(int(NOW) - 1, second(0, 10))
    samples.add_second(int(NOW), second(10, 0))
    watch = GuardWatch((ErrorRateGuard(limit=0.1, seconds=1),), samples, started_at=NOW - 100)
    watch.start_watching(since=NOW)
    try:
        samples.wait_for_second(int(NOW) + 5, timeout=0.5)  # give the thread time to look
        assert watch.check(time.time()) is None
    finally:
        watch.stop()


def test_deadline_trips_once_the_run_has_lasted_that_long():
    watch = GuardWatch((DeadlineGuard(limit=30.0),), SampleStore(), started_at=NOW)
    assert watch.check(NOW + 29.9) is None
    trip = watch.check(NOW + 30.2)
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
    guard = ProbeGuard(probe=HttpProbe(url=url, timeout=1.0), every=0.02, failures=2)
    watch = GuardWatch((guard,), SampleStore(), started_at=time.time())
    watch.start_watching(since=time.time())
    try:
        deadline = time.monotonic() + 20
        while Flaky.served < 20:
            assert watch.check(time.time()) is None, "tripped on failures that were not in a row"
            assert time.monotonic() < deadline, "the probe did not run 20 times"
            time.sleep(0.01)
    finally:
        watch.stop()
        server.shutdown()
    assert watch.check(time.time()) is None


def test_a_probe_guard_trips_after_its_failures_in_a_row():
    closed = f"http://127.0.0.1:{free_port()}/"  # nothing listens: every probe fails at once
    guard = ProbeGuard(probe=HttpProbe(url=closed, timeout=1.0), every=0.05, failures=3)
    watch = GuardWatch((guard,), SampleStore(), started_at=time.time())
    watch.start_watching(since=time.time())
    try:
        deadline = time.monotonic() + 10
        while (trip := watch.check(time.time())) is None:
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
    guard = PrometheusGuard(limit=5.0, seconds=2, every=0.2, url=prometheus, query="gameday_test_errors")
    watch = GuardWatch((guard,), SampleStore(), started_at=time.time())
    watch.start_watching(since=time.time())
    try:
        seen = Exporter.scrapes
        deadline = time.monotonic() + 30
        while Exporter.scrapes < seen + 3:  # three scrapes of a value under the limit, watched
            assert watch.check(time.time()) is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        Exporter.value, raised = 10.0, time.time()
        while (trip := watch.check(time.time())) is None:
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
    guard = PrometheusGuard(limit=5.0, seconds=1, every=0.2, url=url, query=query, below=below)
    watch = GuardWatch((guard,), SampleStore(), started_at=time.time())
    watch.start_watching(since=time.time())
    try:
        deadline = time.monotonic() + 20
        while (trip := watch.check(time.time())) is None:
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

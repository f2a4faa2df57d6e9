"""The master's merge of its workers' seconds: exact, in order, never ahead of a running worker."""

from __future__ import annotations

from typing import Any

from chaoslib_ext.load.merge import Merger, merge_lines
from chaoslib_ext.measure.histogram import Histogram
from chaoslib_ext.measure.samples import Aggregate, EndpointSample

T = 1_800_000_000
LIMIT_US = 250_000


def line(
    second: int, latencies_ms: list[float], waiting: int = 0, oldest: float | None = None
) -> dict[str, Any]:
    """A worker's "second" line: requests sent and finished during `second`."""
    sample = EndpointSample(ok=Histogram((LIMIT_US,)))
    for ms in latencies_ms:
        sample.ok.record_ms(ms)
    aggregate = Aggregate({"GET /x": sample})
    return {
        "type": "second",
        "t": second,
        "waiting": waiting,
        "oldest": oldest,
        "sent": [[second, aggregate.to_dict()]],
    }


def collect() -> tuple[list[dict[str, Any]], Merger]:
    written: list[dict[str, Any]] = []
    return written, Merger(written.append, expected=2)


def ok_of(written_line: dict[str, Any]) -> Histogram:
    [[_, data]] = written_line["sent"]
    return Aggregate.from_dict(data).endpoints["GET /x"].ok


def test_a_second_is_written_once_every_worker_has_sent_it_and_merges_exactly():
    written, merger = collect()
    merger.receive("a", [line(T, [10, 300]), line(T + 1, [20])], last=False)
    merger.write_ready()
    assert written == []  # worker b has not joined: it may still send second T
    merger.receive("b", [line(T, [400, 5], waiting=2, oldest=T + 0.5)], last=False)
    merger.write_ready()
    assert [w["t"] for w in written] == [T]  # b has not sent T + 1 yet
    merged = ok_of(written[0])
    assert (
        merged.count == 4
        and merged.over[LIMIT_US] == 2
        and merged.max_us == 400_000
        and merged.min_us == 5_000
    )
    assert written[0]["waiting"] == 2 and written[0]["oldest"] == T + 0.5
    merger.receive("b", [line(T + 1, [30])], last=False)
    merger.write_ready()
    assert [w["t"] for w in written] == [T, T + 1] and ok_of(written[1]).count == 2


def test_a_lost_or_finished_worker_holds_nothing_back_and_what_it_sent_still_counts():
    written, merger = collect()
    merger.receive("a", [line(T, [10])], last=False)
    merger.receive("b", [line(T, [20])], last=False)
    merger.receive("a", [line(T + 1, [10]), line(T + 2, [10])], last=False)
    merger.write_ready()
    assert [w["t"] for w in written] == [T]
    merger.lose("b")
    merger.write_ready()
    assert [w["t"] for w in written] == [T, T + 1, T + 2]
    assert [ok_of(w).count for w in written] == [2, 1, 1]


def test_at_the_end_everything_is_written_and_a_late_line_is_written_as_it_came():
    written, merger = collect()
    merger.receive("a", [line(T, [10]), line(T + 1, [10])], last=True)
    merger.receive("b", [line(T, [10])], last=False)
    merger.write_ready(everything=True)
    assert [w["t"] for w in written] == [T, T + 1]
    merger.receive("b", [line(T + 1, [99])], last=True)  # came back from missing, say
    assert written[-1] == line(T + 1, [99])  # the runner's store adds it to T + 1
    assert merger.all_done()


def test_merge_of_nothing_is_an_empty_second():
    assert merge_lines(T, []) == {"type": "second", "t": T, "waiting": 0, "oldest": None, "sent": []}

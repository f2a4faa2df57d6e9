"""On Locust's master: the per-second lines of every worker process merged into one line a second.

Each worker's recorder makes the same "second" lines a single process writes, and sends them to
the master in batches (a Locust custom message). The master writes the line for second t once
every worker still running has sent its own: waiting counts add up, the oldest waiting request
is the oldest of all, and the aggregates by send second merge exactly (histograms add bucket by
bucket, exact counts above each latency objective add), so that judging many processes is
judging one. A worker that finished (sent its last batch) or was lost holds nothing back; a line
that comes after its second was written (a worker back from missing) is written as it is, and the
runner's store adds it to that second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chaoslib_ext.measure.samples import Aggregate

Line = dict[str, Any]


@dataclass
class WorkerLines:
    """What one worker sent and the master has not written yet."""

    waiting: dict[int, Line] = field(default_factory=dict)  # second -> its line
    next_second: int | None = None  # the first second it has not sent yet
    done: bool = False  # it sent its last batch, or it was lost


class Merger:
    """Collects the workers' lines and writes each second once all of them have it."""

    def __init__(self, write: Callable[[Line], None], expected: int) -> None:
        self.write = write
        self.expected = expected  # workers that must have joined before any second is written
        self.workers: dict[str, WorkerLines] = {}
        self.next_second: int | None = None  # the first second not written yet

    def receive(self, worker: str, lines: Iterable[Line], last: bool) -> None:
        mine = self.workers.setdefault(worker, WorkerLines())
        for line in lines:
            second = int(line["t"])
            if self.next_second is not None and second < self.next_second:
                self.write(line)  # late (a worker back from missing): the store adds it to that second
                continue
            mine.waiting[second] = line
            mine.next_second = max(second + 1, mine.next_second or second + 1)
        mine.done = mine.done or last

    def lose(self, worker: str) -> None:
        """A worker that will send nothing more: what it sent still counts."""
        self.workers.setdefault(worker, WorkerLines()).done = True

    def back(self, worker: str) -> None:
        """A lost worker that sends again: its seconds are waited for again."""
        self.workers[worker].done = False

    def holding_back(self) -> list[tuple[str, int | None]]:
        """The running workers the next second waits for, with the first second each has not sent."""
        if self.next_second is None:
            return [(worker, mine.next_second) for worker, mine in self.workers.items() if not mine.done]
        return [
            (worker, mine.next_second)
            for worker, mine in self.workers.items()
            if not mine.done and (mine.next_second is None or mine.next_second <= self.next_second)
        ]

    def joined(self) -> set[str]:
        return set(self.workers)

    def all_done(self) -> bool:
        return all(mine.done for mine in self.workers.values())

    def write_ready(self, everything: bool = False) -> None:
        """Write every second that no running worker can still add to (all of them at the end)."""
        if not everything and len(self.workers) < self.expected:
            return  # a worker that has not joined yet may still send the first seconds
        seconds = [second for mine in self.workers.values() for second in mine.waiting]
        if not seconds:
            return
        running = [mine.next_second for mine in self.workers.values() if not mine.done]
        if everything or not running:
            until = max(seconds) + 1
        elif None in running:
            return  # a running worker that has sent no second yet
        else:
            until = min(second for second in running if second is not None)
        start = min(seconds) if self.next_second is None else self.next_second
        for second in range(start, until):
            lines = [line for mine in self.workers.values() if (line := mine.waiting.pop(second, None))]
            self.write(merge_lines(second, lines))  # every second, as one process writes them
            self.next_second = second + 1


def merge_lines(second: int, lines: list[Line]) -> Line:
    """One "second" line from several processes' lines for the same second."""
    by_sent: dict[int, Aggregate] = {}
    for line in lines:
        for sent, data in line["sent"]:
            aggregate = Aggregate.from_dict(data)
            if int(sent) in by_sent:
                by_sent[int(sent)].add(aggregate)
            else:
                by_sent[int(sent)] = aggregate
    oldest = [line["oldest"] for line in lines if line["oldest"] is not None]
    return {
        "type": "second",
        "t": second,
        "waiting": sum(int(line["waiting"]) for line in lines),
        "oldest": min(oldest, default=None),
        "sent": [[sent, aggregate.to_dict()] for sent, aggregate in sorted(by_sent.items())],
    }

"""What the recorder plugin does in each kind of Locust process.

- One process (LocalRunner): its recorder writes each second to the runner's pipe.
- A worker (`load.processes` > 1: Locust forks them): its recorder's seconds go to the master in
  batches, as a Locust custom message, the last batch when its test stops.
- The master: runs no users; merges the workers' seconds (merge.Merger) and writes them to the
  pipe, with the lifecycle lines and which workers joined or were lost.

Custom messages rather than report_to_master: Locust sends those every 3 s, and a guard must see
each second about a second after it ends.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import gevent
from locust.rpc import Message
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from chaoslib_ext.load.merge import Merger
from chaoslib_ext.load.recorder import FLUSH_SECONDS, Emit, Recorder

logger = logging.getLogger(__name__)
WORKER_LINES = "gameday_lines"  # the custom message a worker's seconds travel in
LAST_BATCH_WAIT_SECONDS = 5.0  # after Locust's stop timeout: how long the master waits for last batches


class Role(Protocol):
    def tick(self) -> None: ...
    def started(self) -> None: ...
    def spawned(self, users: int) -> None: ...
    def stopped(self) -> None: ...
    def quitting(self) -> None: ...
    def quit(self) -> None: ...


class SingleProcess:
    """The only Locust process: the recorder writes straight to the pipe."""

    def __init__(self, recorder: Recorder, write: Emit) -> None:
        self.recorder = recorder
        self.write = write

    def tick(self) -> None:
        self.recorder.flush()

    def started(self) -> None:
        self.write({"type": "started"})

    def spawned(self, users: int) -> None:
        self.write({"type": "spawned", "users": users})

    def stopped(self) -> None:
        self.recorder.flush(everything=True)
        self.write({"type": "stopped"})

    def quitting(self) -> None:
        pass

    def quit(self) -> None:  # requests that ended while users were being stopped
        self.recorder.flush(everything=True)


class Worker:
    """A worker process: its seconds go to the master, never to the pipe (which only the master writes)."""

    def __init__(self, recorder: Recorder, runner: WorkerRunner) -> None:
        self.recorder = recorder
        self.runner = runner
        self.batch: list[dict[str, Any]] = []
        recorder.emit = self.batch.append
        self.finished = False

    def send(self, last: bool = False) -> None:
        lines = list(self.batch)
        self.runner.send_message(WORKER_LINES, {"lines": lines, "last": last, "clock": time.time()})
        del self.batch[: len(lines)]  # only once sent: a failed send is tried again on the next tick

    def tick(self) -> None:
        if self.finished:
            return
        self.recorder.flush()
        if self.batch:
            self.send()

    def started(self) -> None:
        self.finished = False
        self.send()  # joins: the master waits for every worker before it writes a second

    def spawned(self, users: int) -> None:
        pass  # the master says when every worker has spawned

    def stopped(self) -> None:
        if not self.finished:
            self.recorder.flush(everything=True)
            self.send(last=True)
            self.finished = True

    def quitting(self) -> None:
        """Locust's worker tells the master it quits as it starts quitting (its own `quitting`
        listener). This one runs first (Locust fires `quitting` in reverse): it stops the users,
        which sends the last batch (test_stop), so that no request is sent after it and the batch
        reaches the master before the worker's "quit" does."""
        self.runner.stop()
        self.stopped()

    def quit(self) -> None:
        pass


class Master:
    """The master process: merges the workers' seconds and writes them, and the lifecycle, to the pipe."""

    def __init__(self, runner: MasterRunner, write: Emit, expected: int, stop_timeout: float) -> None:
        self.runner = runner
        self.write = write
        self.merger = Merger(write, expected)
        self.lost: set[str] = set()  # missing to Locust's heartbeat, until they send again
        self.last_batch_wait = stop_timeout + LAST_BATCH_WAIT_SECONDS  # workers stop their users first
        self.finished = False
        runner.register_message(WORKER_LINES, self.receive)

    def receive(self, environment: Any, msg: Message, **_: Any) -> None:
        worker = str(msg.node_id)
        lines, last = msg.data["lines"], bool(msg.data["last"])
        if worker not in self.merger.joined():
            # the worker's clock at sending minus the master's at receipt: transit plus clock offset
            lag = time.time() - float(msg.data.get("clock", time.time()))
            self.write({"type": "worker", "event": "joined", "worker": worker, "lag_s": round(lag, 4)})
        elif worker in self.lost and lines:
            self.lost.discard(worker)
            self.merger.back(worker)
            self.write({"type": "worker", "event": "back", "worker": worker})
        self.merger.receive(worker, lines, last)
        self.merger.write_ready()

    def tick(self) -> None:
        """Mark the workers Locust's heartbeat misses as lost (joined or not: a worker that never
        sent holds the first seconds back too), and write what is ready."""
        for client in list(self.runner.clients.all):
            worker = str(client.id)
            mine = self.merger.workers.get(worker)
            if client.state == STATE_MISSING and worker not in self.lost and not (mine and mine.done):
                self.lost.add(worker)
                self.merger.lose(worker)
                self.write({"type": "worker", "event": "lost", "worker": worker})
        self.merger.write_ready()

    def started(self) -> None:
        self.write({"type": "started"})

    def spawned(self, users: int) -> None:
        self.write({"type": "spawned", "users": users, "workers": len(self.merger.joined())})

    def stopped(self) -> None:
        """Wait (bounded) for every worker's last batch, then write every second left."""
        if self.finished:
            return  # Locust's master may stop twice (the last worker quit, then its own quit)
        self.finished = True
        if not self.merger.all_done():
            # Locust's quit (its --run-time, SIGTERM) stops the master without telling the workers:
            # stop them, so that they send their last batches now
            self.runner.send_message("stop")
        deadline = time.monotonic() + self.last_batch_wait
        while not self.merger.all_done() and time.monotonic() < deadline:
            gevent.sleep(0.05)
            self.tick()
        self.merger.write_ready(everything=True)
        self.write({"type": "stopped"})

    def quitting(self) -> None:
        pass

    def quit(self) -> None:
        self.merger.write_ready(everything=True)


def tick_forever(role: Role) -> None:
    while True:
        gevent.sleep(FLUSH_SECONDS)
        try:
            role.tick()
        except Exception:  # a send that failed: logged, and tried again on the next tick
            logger.exception("gameday's recorder could not pass its seconds on")

"""What the recorder plugin does in each kind of Locust process.

- One process (LocalRunner): its recorder writes each second to the runner's pipe.
- A worker (`load.processes` > 1: Locust forks them; `load.workers`: `gameday worker` on other
  machines): joins the master (handshake: the same locustfile and gameday, its clock offset), then
  its recorder's seconds go to the master in batches, as a Locust custom message, the last batch
  when its test stops.
- The master: runs no users; welcomes or refuses workers, merges their seconds (merge.Merger) and
  writes them to the pipe, with the lifecycle lines, which workers joined, were lost or refused,
  and what each one is doing.

Custom messages rather than report_to_master: Locust sends those every 3 s, and a guard must see
each second about a second after it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
from locust.env import Environment
from locust.rpc import Message
from locust.runners import STATE_INIT, STATE_MISSING, MasterRunner, WorkerNode, WorkerNodes, WorkerRunner

from chaoslib_ext.load.handshake import (
    CLOCK,
    CLOCK_ROUNDS,
    HELLO,
    REFUSED,
    REFUSED_EXIT_CODE,
    WELCOME,
    ClockRound,
    Identity,
    Settings,
    best_round,
)
from chaoslib_ext.load.merge import Merger
from chaoslib_ext.load.recorder import FLUSH_SECONDS, Emit, Recorder

logger = logging.getLogger(__name__)
WORKER_LINES = "gameday_lines"  # the custom message a worker's seconds travel in
STOP_USERS = "gameday_stop"  # master -> workers: stop your users and send your last batch, now
LAST_BATCH_WAIT_SECONDS = 5.0  # after Locust's stop timeout: how long the master waits for last batches
STATUS_SECONDS = 1.0  # how often the master writes what each worker is doing
HELD_BACK_SECONDS = 3.0  # a second not merged this long after it began: say which worker holds it
SLOW_WRITE_SECONDS = 0.1


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

    def __init__(
        self,
        recorder: Recorder,
        runner: WorkerRunner,
        identity: Identity,
        configure_users: Callable[[Settings], None],
    ) -> None:
        self.recorder = recorder
        self.runner = runner
        self.configure_users = configure_users
        self.batch: list[dict[str, Any]] = []
        recorder.emit = self.batch.append
        self.finished = False
        runner.register_message(CLOCK, self.clock)
        runner.register_message(WELCOME, self.welcome)
        runner.register_message(REFUSED, self.refused)
        runner.register_message(STOP_USERS, lambda **_: self.quitting())
        runner.send_message(HELLO, identity.to_message())

    def clock(self, msg: Message, **_: Any) -> None:
        self.runner.send_message(CLOCK, {"master": msg.data["master"], "worker": time.time()})

    def welcome(self, msg: Message, **_: Any) -> None:
        """The master's settings, and its clock: from now on this worker files requests on it."""
        settings = Settings.from_message(msg.data["settings"])
        self.recorder.configure(settings.limits_us, settings.timeout, float(msg.data["offset"]))
        self.configure_users(settings)
        logger.info("joined gameday's master (clock offset %+.6fs)", float(msg.data["offset"]))

    def refused(self, environment: Environment, msg: Message, **_: Any) -> None:
        logger.error("gameday's master refused this worker: %s", msg.data["reason"])
        environment.process_exit_code = REFUSED_EXIT_CODE
        gevent.spawn(self.runner.quit)

    def send(self, last: bool = False) -> None:
        lines = list(self.batch)
        status = {"users": self.runner.user_count, "requests": self.recorder.requests}
        self.runner.send_message(WORKER_LINES, {"lines": lines, "last": last, **status})
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


class WelcomedWorkers(WorkerNodes):
    """Locust's workers, where only those gameday welcomed are "ready": Locust waits for, and
    spawns users on, ready workers alone."""

    def __init__(self) -> None:
        super().__init__()
        self.welcomed: set[str] = set()

    @property
    def ready(self) -> list[WorkerNode]:
        return [node for node in self.get_by_state(STATE_INIT) if node.id in self.welcomed]

    def __delitem__(self, worker: str) -> None:
        """A worker that quit (or was refused) leaves its place to another."""
        super().__delitem__(worker)
        self.welcomed.discard(worker)


class Master:
    """The master process: welcomes workers, merges their seconds and writes them, and the lifecycle,
    to the pipe."""

    def __init__(
        self,
        runner: MasterRunner,
        write: Emit,
        identity: Identity,
        settings: Settings,
        max_clock_offset: float,
    ) -> None:
        self.runner = runner
        self.write = timed(write)
        environment = runner.environment
        assert environment.parsed_options is not None  # Locust's main parsed them
        self.expected = expected = int(environment.parsed_options.expect_workers)
        stop_timeout = float(environment.stop_timeout or 0)
        self.identity = identity
        self.settings = settings
        self.max_clock_offset = max_clock_offset
        self.merger = Merger(write, expected)
        self.lost: set[str] = set()  # missing to Locust's heartbeat, until they send again
        self.last_batch_wait = stop_timeout + LAST_BATCH_WAIT_SECONDS  # workers stop their users first
        self.finished = False
        self.clock_rounds: dict[str, list[ClockRound]] = {}  # workers being welcomed
        self.identities: dict[str, Identity] = {}
        self.status: dict[str, dict[str, int]] = {}  # what each worker last said it does
        self.status_written = 0.0
        self.warned = 0.0
        self.workers = WelcomedWorkers()
        for worker in runner.clients:  # none yet, unless a forked worker was very quick
            self.workers[worker] = runner.clients[worker]
        runner.clients = self.workers
        runner.register_message(HELLO, self.hello)
        runner.register_message(CLOCK, self.clock)
        runner.register_message(WORKER_LINES, self.receive)

    def hello(self, msg: Message, **_: Any) -> None:
        worker = str(msg.node_id)
        theirs = self.identities[worker] = Identity.from_message(msg.data)
        joining = [other for other in self.clock_rounds if other in self.workers]  # not those gone since
        if len(self.workers.welcomed) + len(joining) >= self.expected:
            self.refuse(worker, f"the run already has the {self.expected} worker(s) it expects")
        elif (difference := self.identity.difference(theirs)) is not None:
            self.refuse(worker, difference)
        elif theirs.boot == self.identity.boot != "?":  # the master's own kernel: its own clock
            self.welcome(worker, 0.0, 0.0)
        else:
            self.clock_rounds[worker] = []
            self.ping(worker)

    def ping(self, worker: str) -> None:
        self.runner.send_message(CLOCK, {"master": time.time()}, client_id=worker)

    def clock(self, msg: Message, **_: Any) -> None:
        """One round of the clock exchange; after the last, welcome the worker or refuse it."""
        worker = str(msg.node_id)
        rounds = self.clock_rounds.get(worker)
        if rounds is None:
            return
        rounds.append(ClockRound(float(msg.data["master"]), float(msg.data["worker"]), time.time()))
        if len(rounds) < CLOCK_ROUNDS:
            self.ping(worker)
            return
        del self.clock_rounds[worker]
        best = best_round(rounds)
        if abs(best.offset) > self.max_clock_offset:
            reason = (
                f"its clock is {best.offset:+.3f}s off the master's, more than load.workers.max_clock_offset "
                f"({self.max_clock_offset:g}s): synchronise both with NTP"
            )
            self.refuse(worker, reason)
            return
        self.welcome(worker, best.offset, best.round_trip / 2)

    def welcome(self, worker: str, offset: float, uncertainty: float) -> None:
        self.runner.send_message(
            WELCOME, {"offset": offset, "settings": self.settings.to_message()}, client_id=worker
        )
        self.workers.welcomed.add(worker)  # after the welcome: the worker reads it before any spawn
        self.write(
            {
                "type": "worker",
                "event": "joined",
                "worker": worker,
                "host": self.identities[worker].host,
                "clock_offset_s": round(offset, 6),
                "clock_uncertainty_s": round(uncertainty, 6),
            }
        )

    def refuse(self, worker: str, reason: str) -> None:
        """Tell the worker why it cannot join (it quits), and the runner. Before the test starts it
        leaves Locust's list at once: Locust's headless master quits when its last worker does."""
        self.runner.send_message(REFUSED, {"reason": reason}, client_id=worker)
        if self.runner.state == STATE_INIT and worker in self.workers:
            del self.workers[worker]
        host = self.identities[worker].host
        self.write({"type": "worker", "event": "refused", "worker": worker, "host": host, "reason": reason})

    def receive(self, environment: Any, msg: Message, **_: Any) -> None:
        worker = str(msg.node_id)
        if worker not in self.workers.welcomed:
            return  # a refused worker's last words
        lines, last = msg.data["lines"], bool(msg.data["last"])
        if worker in self.lost and lines:
            self.lost.discard(worker)
            self.merger.back(worker)
            self.write({"type": "worker", "event": "back", "worker": worker})
        self.status[worker] = {"users": int(msg.data["users"]), "requests": int(msg.data["requests"])}
        self.merger.receive(worker, lines, last)
        if last and not self.finished:  # it stopped on its own (SIGTERM, Ctrl-C): its users' load with it
            self.write({"type": "worker", "event": "lost", "worker": worker, "reason": "it quit"})
        self.merger.write_ready()

    def tick(self) -> None:
        """Mark the welcomed workers Locust's heartbeat misses as lost (one that never sent holds
        the first seconds back too), write what is ready, and now and then what each worker does."""
        for client in list(self.runner.clients.all):
            worker = str(client.id)
            mine = self.merger.workers.get(worker)
            if (
                client.state == STATE_MISSING
                and worker in self.workers.welcomed
                and worker not in self.lost
                and not (mine and mine.done)
            ):
                self.lost.add(worker)
                self.merger.lose(worker)
                self.write({"type": "worker", "event": "lost", "worker": worker})
        self.merger.write_ready()
        self.warn_if_held_back()
        if self.status and time.monotonic() - self.status_written >= STATUS_SECONDS:
            self.write({"type": "workers", "workers": self.status})
            self.status_written = time.monotonic()

    def warn_if_held_back(self) -> None:
        """In Locust's log: which worker the merged seconds have waited for, for long."""
        waiting = [second for mine in self.merger.workers.values() for second in mine.waiting]
        behind = (
            self.merger.next_second if self.merger.next_second is not None else min(waiting, default=None)
        )
        if self.finished or behind is None or time.time() - behind < HELD_BACK_SECONDS:
            return
        if time.monotonic() < self.warned + HELD_BACK_SECONDS:
            return
        self.warned = time.monotonic()
        logger.warning(
            "gameday's merge has waited %.1fs for second %d: %s (%d worker(s) joined, %d expected)",
            time.time() - behind,
            behind,
            ", ".join(f"{worker} (sent up to {sent})" for worker, sent in self.merger.holding_back()),
            len(self.merger.workers),
            self.expected,
        )

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
            # Locust's quit (its --run-time, SIGTERM) stops the master without telling the workers
            # until it sends them "quit" after this: stop their users, so that they send their last
            # batches now. Not Locust's "stop": a worker that answers it leaves the master's list
            # for a while, and would miss the "quit" (one elsewhere would then wait for a master
            # that is gone).
            self.runner.send_message(STOP_USERS)
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


def timed(write: Emit) -> Emit:
    """The master's writes to the runner's pipe block the whole process (gevent cannot make them
    wait cooperatively) if the runner stops reading: say so in Locust's log when one is slow."""

    def write_timed(message: dict[str, Any]) -> None:
        started = time.monotonic()
        write(message)
        if (took := time.monotonic() - started) > SLOW_WRITE_SECONDS:
            logger.warning("gameday's master waited %.2fs for the runner to take a line", took)

    return write_timed


def tick_forever(role: Role) -> None:
    while True:
        gevent.sleep(FLUSH_SECONDS)
        try:
            role.tick()
        except Exception:  # a send that failed: logged, and tried again on the next tick
            logger.exception("gameday's recorder could not pass its seconds on")

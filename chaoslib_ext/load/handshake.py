"""How a Locust worker joins gameday's master: the same locustfile and gameday, and a clock the
master can put on its own.

    worker -> master  HELLO    {identity}            as the worker starts
    master -> worker  CLOCK    {master: m0}          (REFUSED {reason} if the identity differs)
    worker -> master  CLOCK    {master: m0, worker: w1}   CLOCK_ROUNDS times
    master -> worker  WELCOME  {offset, settings}    (REFUSED if the clock is too far off)

The offset is NTP's estimate from the round with the shortest round trip: the worker's clock at
w1 minus the master's at the middle of that round trip, within half the round trip; a worker on
the master's own kernel (the same boot id: a forked one, or one in a container) reads the master's
clock, and its offset is 0 exactly. A welcomed
worker files its requests on the master's clock (its own minus the offset), so that the seconds
of every machine line up. Only welcomed workers count as ready: Locust spawns users on them alone.
Imports nothing from Locust (or gevent).
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import chaoslib_ext

HELLO = "gameday_hello"
CLOCK = "gameday_clock"
WELCOME = "gameday_welcome"
REFUSED = "gameday_refused"
CLOCK_ROUNDS = 5
REFUSED_EXIT_CODE = 2
BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class Identity:
    """What must be the same on the master and every worker for their seconds to be one run's."""

    gameday: str
    locust: str
    locustfile: str  # the file as the process was given it
    digest: str  # sha256 of its content
    host: str  # where the process runs, for the report
    boot: str  # the kernel's boot id: the same one is the same clock

    @classmethod
    def of(cls, locustfile: str) -> Identity:
        digest = hashlib.sha256()
        for name in locustfile.split(","):  # Locust takes several files, comma-separated
            digest.update(Path(name).read_bytes())
        digest_text = digest.hexdigest()[:16]
        return cls(
            chaoslib_ext.__version__,
            version("locust"),
            locustfile,
            digest_text,
            socket.gethostname(),
            boot_id(),
        )

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Identity:
        return cls(**{name: str(data.get(name, "?")) for name in cls.__dataclass_fields__})

    def to_message(self) -> dict[str, str]:
        return asdict(self)

    def difference(self, worker: Identity) -> str | None:
        """Why a worker with this identity cannot join this master's run (None: it can)."""
        if worker.gameday != self.gameday:
            return f"the worker runs gameday {worker.gameday}, the master gameday {self.gameday}"
        if worker.locust != self.locust:
            return f"the worker runs Locust {worker.locust}, the master Locust {self.locust}"
        if worker.digest != self.digest:
            return (
                f"the worker's locustfile {worker.locustfile} (sha256 {worker.digest}) is not the master's "
                f"{self.locustfile} (sha256 {self.digest})"
            )
        return None


def boot_id() -> str:
    """This kernel's boot id (Linux): processes that share it read one clock."""
    try:
        return Path(BOOT_ID).read_text().strip()
    except OSError:
        return "?"


@dataclass(frozen=True)
class ClockRound:
    master_sent: float
    worker_clock: float
    master_received: float

    @property
    def round_trip(self) -> float:
        return self.master_received - self.master_sent

    @property
    def offset(self) -> float:
        """The worker's clock minus the master's, if the trip took as long both ways."""
        return self.worker_clock - (self.master_sent + self.master_received) / 2


def best_round(rounds: list[ClockRound]) -> ClockRound:
    """The round with the shortest round trip: its offset is the least uncertain (± half of it)."""
    return min(rounds, key=lambda one: one.round_trip)


@dataclass(frozen=True)
class Settings:
    """What a worker's recorder and users take from the run, as the master was given them."""

    limits_us: tuple[int, ...]
    timeout: float
    pacing: float | None

    def to_message(self) -> dict[str, Any]:
        return {"limits_us": list(self.limits_us), "timeout": self.timeout, "pacing": self.pacing}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Settings:
        pacing = None if data["pacing"] is None else float(data["pacing"])
        return cls(tuple(int(limit) for limit in data["limits_us"]), float(data["timeout"]), pacing)

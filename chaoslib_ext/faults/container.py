"""container-kill, -stop, -pause and -restart, on the containers a DockerTarget selects.

Stop and pause last: their undo (`docker start`, `docker unpause`) is in the ledger before they act,
so `gameday recover` brings the containers back if the run dies.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from docker.errors import APIError, NotFound

from chaoslib_ext.drivers.docker.aftermath import raise_if_lost
from chaoslib_ext.drivers.docker.driver import ending
from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import Fault, FaultError, FaultRecord, choose, selection_size
from chaoslib_ext.spec.model import ContainerFault, ContainerSelector
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.undo import RestoreContainer

UNDO = {"container-stop": "start", "container-pause": "unpause"}
STOP_TIMEOUT_SECONDS = 3  # docker stop's grace before SIGKILL
SETTLE_SECONDS = STOP_TIMEOUT_SECONDS + 3  # how long a stop interrupted mid-call may still take


class ContainerTarget(Protocol):
    ledger: Ledger
    engine: str  # the Docker endpoint the containers live on

    def containers(self, selector: ContainerSelector, where: str) -> list[Any]: ...


class ContainerFaultAction(Fault):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.hit: list[tuple[Any, int]] = []  # (container, ledger entry)
        self.unsettled: set[str] = set()  # ids of containers whose stop or pause was interrupted mid-call

    @property
    def reversible(self) -> bool:  # type: ignore[override]
        return self.spec.kind in UNDO

    def apply(self, target: ContainerTarget) -> list[FaultRecord]:
        params: ContainerFault = self.spec.params  # type: ignore[assignment]
        found = target.containers(params.selector, str(self.spec.where))
        size = selection_size(params.count, params.percent, len(found), default=1)
        chosen = choose(self.rng, found, size)
        records = []
        for container in chosen:
            try:
                detail = self._act(container, params, target.ledger, target.engine)
                container.reload()
            except (APIError, NotFound) as error:
                failure = RunAborted(
                    f"{self.spec.kind} on {container.name} failed: {error.explanation or error}",
                    where=str(self.spec.where),
                )
                raise FaultError(failure, records) from None
            records.append(
                self.record(
                    self.spec.kind.removeprefix("container-"),
                    container.name,
                    {**detail, "id": container.short_id, "status": container.status},
                )
            )
        return records

    def _act(self, container: Any, params: ContainerFault, ledger: Ledger, engine: str) -> dict[str, Any]:
        kind = self.spec.kind
        if kind == "container-kill":
            container.kill(signal=params.signal)
            return {"signal": params.signal}
        if kind == "container-restart":
            container.restart(timeout=3)
            return {}
        entry = ledger.record(f"{kind} {container.name}", RestoreContainer(UNDO[kind], container.id, engine))
        self.hit.append((container, entry))  # before it acts: interrupted mid-call, dockerd may still do it
        self.unsettled.add(container.id)
        try:
            container.stop(timeout=STOP_TIMEOUT_SECONDS) if kind == "container-stop" else container.pause()
        except NotFound:  # it is gone: nothing was done, nothing to undo
            self.hit.pop()
            ledger.done(entry)
            raise
        self.unsettled.discard(container.id)
        return {}

    def revert(self, target: ContainerTarget) -> list[FaultRecord]:
        records = []
        for container, entry in self.hit:
            if container.id in self.unsettled:
                _settle(container)
            records.append(self._undo(container))
            target.ledger.done(entry)
        self.hit, self.unsettled = [], set()
        raise_if_lost(self, records)
        return records

    def _undo(self, container: Any) -> FaultRecord:
        """Start or unpause it, unless something else did already; say if it is gone instead."""
        kind = self.spec.kind
        try:
            container.reload()
            state = container.attrs["State"]
            if kind == "container-pause" and state["Status"] not in ("paused", "running"):
                return self.record("exited", container.name, ending(state))
            if kind == "container-stop" and container.status != "running":
                container.start()
            elif kind == "container-pause" and container.status == "paused":
                container.unpause()
            container.reload()
        except NotFound:
            return self.record("removed", container.name, {"id": container.short_id})
        except APIError as error:
            raise RunAborted(
                f"could not {UNDO[kind]} {container.name}: {error.explanation}",
                hint="run `gameday recover`",
            ) from None
        return self.record(UNDO[kind], container.name, {"id": container.short_id, "status": container.status})


def _settle(container: Any) -> None:
    """A stop (or pause) interrupted mid-call may still be carried out by dockerd: wait until the
    container is no longer running, for as long as that can take, before deciding what to undo."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        try:
            container.reload()
        except NotFound:
            return  # gone: the undo says so
        if container.status != "running":
            return
        time.sleep(0.1)

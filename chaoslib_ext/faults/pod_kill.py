"""pod-kill: signal a share of a service's live replicas, as `kubectl delete pod --force` would."""

from __future__ import annotations

import math
import time

from ..errors import RunAborted
from ..spec.model import PodKill
from .base import Fault, FaultRecord, PodTarget


def kill_count(params: PodKill, live: int) -> int:
    """How many of `live` replicas one injection kills (count, or percent rounded up, at least 1)."""
    if params.count is not None:
        return min(params.count, live)
    if params.percent is not None:
        return min(live, max(1, math.ceil(params.percent * live)))
    return min(1, live)


class PodKillFault(Fault):
    def apply(self, target: PodTarget) -> list[FaultRecord]:
        params: PodKill = self.spec.params
        live = sorted(target.live(params.service), key=lambda pod: pod.name)
        if not live:
            raise RunAborted(
                f"pod-kill: no live replica of {params.service!r} to kill",
                where=str(self.spec.where),
                hint="the restart delay may be longer than the kill interval",
            )
        victims = self.rng.sample(live, kill_count(params, len(live)))
        records = []
        for pod in victims:
            pid = target.kill(pod, params.signal)
            records.append(
                FaultRecord(
                    time.time(),
                    self.index,
                    self.label,
                    "kill",
                    pod.name,
                    {"pid": pid, "signal": params.signal, "live_before": len(live)},
                )
            )
        return records

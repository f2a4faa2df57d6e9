"""pod-kill: signal a share of a service's live replicas, as `kubectl delete pod --force` would."""

from __future__ import annotations

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import Fault, FaultRecord, PodTarget, choose, selection_size
from chaoslib_ext.spec.model import PodKill


class PodKillFault(Fault):
    def apply(self, target: PodTarget) -> list[FaultRecord]:
        params: PodKill = self.spec.params
        live = target.live(params.service)
        if not live:
            raise RunAborted(
                f"pod-kill: no live replica of {params.service!r} to kill",
                where=str(self.spec.where),
                hint="the restart delay may be longer than the kill interval",
            )
        victims = choose(self.rng, live, selection_size(params.count, params.percent, len(live), default=1))
        records = []
        for pod in victims:
            traffic = target.traffic_to(pod)
            pid = target.kill(pod, params.signal)
            detail: dict[str, object] = {"pid": pid, "signal": params.signal, "live_before": len(live)}
            if traffic is not None:
                detail["traffic"] = traffic
            records.append(self.record("kill", pod.name, detail))
        return records

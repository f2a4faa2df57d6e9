"""Chaos Mesh objects built by gameday: a NetworkChaos or DNSChaos naming exactly the pods
gameday chose (never Chaos Mesh's own random pick), labelled with gameday and the run, with a
`duration` of the fault's window plus a margin, so that Chaos Mesh ends it even if gameday dies.

chaosk8s.chaosmesh's wrappers are not used: they always add `target: {mode: one}` (the fault then
hits traffic to one random pod only) and have no duration, partition or DNSChaos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chaoslib_ext.faults.base import LookupFault, TrafficFault
from chaoslib_ext.faults.dns_error import DnsError
from chaoslib_ext.faults.network_bandwidth import NetworkBandwidth
from chaoslib_ext.faults.network_latency import NetworkLatency
from chaoslib_ext.faults.network_loss import NetworkLoss
from chaoslib_ext.faults.network_partition import NetworkPartition

GROUP, VERSION = "chaos-mesh.org", "v1alpha1"
MANAGED_BY = {"app.kubernetes.io/managed-by": "gameday"}
RUN_LABEL = "gameday.dev/run"
EXPIRES = "gameday.dev/expires"  # epoch seconds after which no live run holds the object
MARGIN_SECONDS = 60  # Chaos Mesh ends the fault this long after its planned end if gameday did not
PLURALS = {"NetworkChaos": "networkchaos", "DNSChaos": "dnschaos"}
BANDWIDTH_LIMIT, BANDWIDTH_BUFFER = 20_971_520, 10_000  # tbf's queue and bucket, in bytes


@dataclass(frozen=True)
class ChaosObject:
    kind: str
    plural: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def chaos_object(
    fault: TrafficFault | LookupFault,
    name: str,
    namespace: str,
    pods: list[str],
    run_id: str,
    window: float,
    now: float,
) -> ChaosObject:
    """The object for one fault on exactly `pods` (all in `namespace`)."""
    seconds = math.ceil(window) + MARGIN_SECONDS
    if isinstance(fault, LookupFault):
        kind, spec = "DNSChaos", {"action": "error", "patterns": list(fault.patterns)}
    else:
        kind, spec = "NetworkChaos", {"direction": "to", **network_spec(fault)}
    metadata = {
        "name": name,
        "namespace": namespace,
        "labels": {**MANAGED_BY, RUN_LABEL: run_id[-63:]},
        "annotations": {
            EXPIRES: str(math.ceil(now + seconds)),
            "gameday.dev/fault": fault.describe("packets"),
        },
    }
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": metadata,
        "spec": {
            "mode": "all",
            "selector": {"pods": {namespace: sorted(pods)}},
            "duration": f"{seconds}s",
            **spec,
        },
    }
    return ChaosObject(kind, PLURALS[kind], body)


def network_spec(fault: TrafficFault) -> dict[str, Any]:
    """The NetworkChaos action and its parameters, on what leaves the pods (direction `to`)."""
    if isinstance(fault, NetworkLatency):
        delay = {"latency": _ms(fault.delay), "jitter": _ms(fault.jitter), "correlation": "0"}
        return {"action": "delay", "delay": delay}
    if isinstance(fault, NetworkLoss):
        return {"action": "loss", "loss": {"loss": f"{fault.probability * 100:g}", "correlation": "0"}}
    if isinstance(fault, NetworkBandwidth):
        rate = f"{max(1, round(fault.rate * 8 / 1000))}kbps"
        return {
            "action": "bandwidth",
            "bandwidth": {"rate": rate, "limit": BANDWIDTH_LIMIT, "buffer": BANDWIDTH_BUFFER},
        }
    if isinstance(fault, NetworkPartition):
        return {"action": "partition"}
    raise ValueError(f"Chaos Mesh has no NetworkChaos for {fault.kind}")


def refusal(fault: Any) -> str | None:
    """Why Chaos Mesh cannot express this fault as written (None: it can)."""
    if isinstance(fault, TrafficFault):
        if fault.direction != "downstream":
            return (
                "Chaos Mesh acts on the traffic leaving the chosen pods (direction `to`, with no target): "
                "write direction: downstream"
            )
        if isinstance(fault, NetworkPartition) and fault.mode == "refuse":
            return (
                "Chaos Mesh drops a partition's packets, it cannot refuse connections: write mode: blackhole"
            )
        if isinstance(fault, NetworkBandwidth) and fault.rate * 8 < 1000:
            return "Chaos Mesh's bandwidth is set in kbps: give a rate of at least 125B/s"
    if isinstance(fault, DnsError):
        if fault.rcode != "SERVFAIL":
            return "DNSChaos answers an error it chooses itself: only rcode: SERVFAIL says what it does"
        if fault.probability < 1:
            return "DNSChaos acts on every matching lookup: probability must be 100%"
        bad = [p for p in fault.patterns if "*" in p.rstrip("*")]
        if bad:
            return f"DNSChaos takes a * only at the end of a pattern ({bad[0]!r} has one elsewhere)"
    return None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"

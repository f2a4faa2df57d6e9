"""faults: one module per fault kind, each registered by name; drivers carry them out."""

from chaoslib_ext.faults import (  # noqa: F401  (each module registers its kind)
    container_pause,
    container_restart,
    container_stop,
    dns_delay,
    dns_error,
    dns_spoof,
    network_bandwidth,
    network_latency,
    network_loss,
    network_partition,
    network_reset,
    pod_kill,
)
from chaoslib_ext.faults.base import FaultKind, FaultSpec, Outcome, Selection
from chaoslib_ext.faults.registry import KINDS

__all__ = ["KINDS", "FaultKind", "FaultSpec", "Outcome", "Selection"]

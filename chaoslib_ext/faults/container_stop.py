"""container-stop: stop a share of the targets (SIGTERM, then SIGKILL after a grace) and start
them again when the fault ends, unless something else did."""

from __future__ import annotations

from dataclasses import dataclass

from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.suspension import SuspendFault


@register
@dataclass(frozen=True)
class ContainerStop(SuspendFault):
    kind = "container-stop"
    how = "stop"

    def describe(self, unit: str = "connections") -> str:
        return "stop, then start again"

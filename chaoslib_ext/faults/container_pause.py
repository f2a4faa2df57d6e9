"""container-pause: freeze a share of the targets (the cgroup freezer: processes stop running,
connections stay open, nothing answers) and thaw them when the fault ends."""

from __future__ import annotations

from dataclasses import dataclass

from chaoslib_ext.faults.registry import register
from chaoslib_ext.faults.suspension import SuspendFault


@register
@dataclass(frozen=True)
class ContainerPause(SuspendFault):
    kind = "container-pause"
    how = "pause"

    def describe(self, unit: str = "connections") -> str:
        return "pause, then unpause"

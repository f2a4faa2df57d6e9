"""How the kubernetes driver's faults name their targets: pods by labels, or by the selector of a
Deployment or StatefulSet, in the target's namespace (or the selector's own)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from chaoslib_ext.faults.base import FaultKind, Scope, Selection
from chaoslib_ext.spec.model import label_texts
from chaoslib_ext.units import parse_percent

if TYPE_CHECKING:
    from chaoslib_ext.drivers.base import BuildContext

Workload = Literal["deployment", "statefulset"]
POD_SELECTOR = {
    "type": "object",
    "properties": {
        "labels": {"$ref": "#/$defs/labels"},
        "deployment": {"type": "string", "description": "kubernetes driver: the pods of this Deployment"},
        "statefulset": {"type": "string", "description": "kubernetes driver: the pods of this StatefulSet"},
        "namespace": {"type": "string", "description": "kubernetes driver: instead of target.namespace"},
    },
}
SELECTION_PROPERTIES: dict[Scope, dict[str, Any]] = {
    "process": {"selector": POD_SELECTOR},
    "network": {"selector": POD_SELECTOR},
    "names": {"selector": POD_SELECTOR},
}
FOREIGN = {"service": "the local driver's", "name": "the docker driver's"}


@dataclass(frozen=True)
class PodSelector:
    namespace: str
    labels: dict[str, str]
    workload: tuple[Workload, str] | None = None  # its own selector gives the labels at plan time

    def describe(self) -> str:
        if self.workload is not None:
            return f"pods of {self.workload[0]} {self.namespace}/{self.workload[1]}"
        labels = ",".join(f"{key}={value}" for key, value in self.labels.items())
        return f"pods in {self.namespace} labelled {labels}"

    def label_selector(self, labels: dict[str, str] | None = None) -> str:
        return ",".join(f"{key}={value}" for key, value in (labels or self.labels).items())


def parse_pod_selection(
    kind: type[FaultKind],
    spec: Mapping[str, Any],
    path: tuple[str | int, ...],
    context: BuildContext,
) -> Selection | None:
    namespace = str(context.target.get("namespace", "default"))
    selector = spec.get("selector")
    if selector is None:
        context.error(
            (*path, "to") if "to" in spec else path,
            "with the kubernetes driver a fault selects pods",
            "write selector: {labels: {app: web}} or {deployment: web}",
        )
        return None
    for key, whose in FOREIGN.items():
        if key in selector:
            context.error(
                (*path, "selector", key), f"selector.{key} is {whose}", "select pods by labels or workload"
            )
    workload: tuple[Workload, str] | None = None
    if "deployment" in selector:
        workload = ("deployment", selector["deployment"])
    elif "statefulset" in selector:
        workload = ("statefulset", selector["statefulset"])
    named = sum(key in selector for key in ("labels", "deployment", "statefulset"))
    if named != 1:
        context.error(
            (*path, "selector"),
            "a kubernetes selector names exactly one of labels, deployment or statefulset",
            "write selector: {labels: {app: web}} or {deployment: web}",
        )
    count = spec.get("count")
    percent = parse_percent(spec["percent"]) if "percent" in spec else None
    labels = label_texts(selector.get("labels", {}))
    return Selection(PodSelector(selector.get("namespace", namespace), labels, workload), count, percent)

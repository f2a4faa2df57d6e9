"""How the docker driver's faults name their targets: running containers, by label or name glob."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chaoslib_ext.faults.base import FaultKind, Scope, Selection
from chaoslib_ext.spec.model import label_texts
from chaoslib_ext.units import parse_percent

if TYPE_CHECKING:
    from chaoslib_ext.drivers.base import BuildContext

CONTAINER_SELECTOR = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "labels": {"$ref": "#/$defs/labels"},
        "name": {"type": "string", "description": "docker driver: a glob on the container name"},
    },
    "description": "docker driver: the containers a fault hits",
}
SELECTION_PROPERTIES: dict[Scope, dict[str, Any]] = {
    "process": {"selector": CONTAINER_SELECTOR},
    "network": {"selector": CONTAINER_SELECTOR},
    "names": {"selector": CONTAINER_SELECTOR},
}
WHAT = {"process": "a fault", "network": "a network fault", "names": "a DNS fault"}


@dataclass(frozen=True)
class ContainerSelector:
    labels: dict[str, str]
    name: str | None  # a glob on the container name

    def describe(self) -> str:
        parts = [f"{key}={value}" for key, value in self.labels.items()]
        return " ".join(parts + ([f"name~{self.name}"] if self.name else []))

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in self.labels.items()):
            return False
        return self.name is None or fnmatch.fnmatchcase(name, self.name)


def parse_container_selection(
    kind: type[FaultKind], spec: Mapping[str, Any], path: tuple[str | int, ...], context: BuildContext
) -> Selection | None:
    selector = spec.get("selector")
    if selector is None:
        context.error(
            (*path, "to") if "to" in spec else path,
            f"with the docker driver {WHAT[kind.scope]} selects containers",
            "write selector: {labels: {...}} or {name: ...}",
        )
        return None
    if "service" in selector:
        context.error(
            (*path, "selector", "service"),
            "selector.service is for the local driver: the docker driver selects containers",
            "write selector: {labels: {...}} or {name: ...}",
        )
    if "to" in spec:
        context.error((*path, "to"), "to: is for the local driver", "select the containers with selector:")
    count = spec.get("count")
    percent = parse_percent(spec["percent"]) if "percent" in spec else None
    return Selection(
        ContainerSelector(label_texts(selector.get("labels", {})), selector.get("name")), count, percent
    )

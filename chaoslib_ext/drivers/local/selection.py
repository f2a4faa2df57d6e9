"""How the local driver's faults name their targets: a service gameday starts, by name.

pod-kill writes `selector: {service: NAME}`; network faults `to: NAME` (and optionally `path`);
DNS faults name none, since they act on the run's own DNS server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from chaoslib_ext.faults.base import FaultKind, Scope, Selection
from chaoslib_ext.units import parse_percent

if TYPE_CHECKING:
    from chaoslib_ext.drivers.base import BuildContext

Route = Literal["auto", "kernel", "userspace"]  # how a network fault reaches a service's traffic
SELECTION_PROPERTIES: dict[Scope, dict[str, Any]] = {
    "process": {
        "selector": {
            "type": "object",
            "properties": {"service": {"type": "string", "description": "local driver: the service"}},
        }
    },
    "network": {
        "to": {
            "type": "string",
            "description": "local driver: the service whose traffic is hit "
            "(callers must reach it through {proxied:SERVICE}, unless it is isolated: netns)",
        },
        "path": {
            "enum": ["auto", "kernel", "userspace"],
            "x-expected": "auto, kernel (iptables/tc in the replica's namespace) "
            "or userspace (gameday's proxy)",
        },
    },
    "names": {},
}


@dataclass(frozen=True)
class ServiceSelector:
    service: str
    route: Route = "auto"

    def describe(self) -> str:
        return f"replicas of {self.service}"


def parse_service_selection(
    kind: type[FaultKind], spec: Mapping[str, Any], path: tuple[str | int, ...], context: BuildContext
) -> Selection | None:
    if kind.scope == "names":
        misplaced = next((key for key in ("selector", "count", "percent") if key in spec), None)
        if misplaced is not None:
            context.error(
                (*path, misplaced),
                f"{misplaced} is for the docker driver: with the local driver a DNS fault acts on the "
                "run's DNS server",
                "remove it, and give {dns} to the services that should resolve through gameday",
            )
        return None
    field: tuple[str, ...]  # where the service is named, under path
    if kind.scope == "process":
        service, field = spec.get("selector", {}).get("service", ""), ("selector", "service")
        if not service:
            context.error(
                path, "with the local driver a fault names a service", "write selector: {service: NAME}"
            )
    else:
        service, field = spec.get("to", ""), ("to",)
        if not service:
            context.error(
                path,
                "with the local driver a network fault names a service",
                "write to: SERVICE (selector: is for the docker driver)",
            )
    if service and service not in context.services:
        context.error(
            (*path, *field),
            f"no service named {service!r}",
            "declared services: " + (", ".join(context.services) or "none"),
        )
    count = spec.get("count")
    replicas = context.services[service].replicas if service in context.services else None
    if replicas is not None and count is not None and count > replicas:
        context.error(
            (*path, "count"),
            f"count {count} is more than the {replicas} replica(s) of {service!r}",
            "lower count, or use percent: 100%",
        )
    route: Route = spec.get("path", "auto")
    if kind.scope == "network" and service in context.services:
        _check_route(route, service, path, context)
    percent = parse_percent(spec["percent"]) if "percent" in spec else None
    return Selection(ServiceSelector(service, route), count, percent)


def _check_route(route: Route, service: str, path: tuple[str | int, ...], context: BuildContext) -> None:
    """What the file alone says about the way a network fault goes in (whether this kernel can
    shape latency is the driver's preflight)."""
    isolated = context.services[service].isolation == "netns"
    if route == "kernel" and not isolated:
        context.error(
            (*path, "path"),
            f"the kernel path cannot be used: services.{service} is not isolated in network namespaces",
            f"use path: userspace and reach {service} through {{proxied:{service}}}",
        )
    elif (route == "userspace" or not isolated) and service not in context.proxied:
        context.error(
            (*path, "to"),
            f"nothing reaches {service!r} through gameday's fault proxies",
            f"write {{proxied:{service}}} where callers are given its address",
        )

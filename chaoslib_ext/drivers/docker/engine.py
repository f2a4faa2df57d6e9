"""The Docker engine as the docker driver sees it: the client, the containers a selector picks
(within the allowlist), each start of a container, and how its last run ended."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from chaoslib_ext.drivers.docker.selection import ContainerSelector
from chaoslib_ext.errors import RunAborted, SpecError
from chaoslib_ext.spec.model import Allowlist
from chaoslib_ext.state.undo import Place

STOP_TIMEOUT_SECONDS = 3  # docker stop and restart: SIGTERM, then SIGKILL after this


def engine_endpoint() -> str:
    """Where the Docker engine is reached, as docker.from_env() reaches it; recorded with every
    undo, so that `gameday recover` acts on that engine whatever DOCKER_HOST says then."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect() -> Any:
    """A Docker client, or a one-line error saying why there is none."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        text = str(error)
        if "Permission denied" in text:
            raise RunAborted(
                "permission denied on the Docker socket",
                hint="run as root or add your user to the docker group",
            ) from None
        if "No such file" in text or "Connection refused" in text or "connect" in text.lower():
            raise RunAborted(
                "Docker is not running (or not installed)",
                hint="install docker.io and start dockerd; DOCKER_HOST says where to look",
            ) from None
        raise RunAborted(f"cannot talk to Docker: {text[:200]}") from None
    return client


def select(client: Any, selector: ContainerSelector, allow: Allowlist | None, where: str) -> list[Any]:
    """Running containers matching the selector, sorted by name; refuse any outside the allowlist."""
    filters = (
        {"label": [f"{key}={value}" for key, value in selector.labels.items()]} if selector.labels else {}
    )
    found = sorted(
        (c for c in client.containers.list(filters=filters) if selector.matches(c.name, c.labels or {})),
        key=lambda c: c.name,
    )
    if not found:
        raise SpecError(
            f"no running container matches {selector.describe()}",
            where=where,
            hint="check the labels or name pattern with `docker ps`",
        )
    if allow is not None:
        outside = [c.name for c in found if not allow.admits(c.name, c.labels or {})]
        if outside:
            raise SpecError(
                f"container {outside[0]} matches the selector but is outside target.allow",
                where=where,
                hint="narrow the selector or widen target.allow",
            )
    return found


@dataclass(frozen=True)
class ContainerInstance:
    """One start of a container: a restart gives it a new network namespace and start time, and
    the faults put in the old namespace go with it."""

    id: str
    name: str
    started_at: str
    netns: str  # the SandboxKey: a path that names this start's namespace and dies with it
    pid: int

    @classmethod
    def of(cls, container: Any) -> ContainerInstance:
        state = container.attrs["State"]
        return cls(
            container.id,
            container.name,
            state["StartedAt"],
            container.attrs["NetworkSettings"]["SandboxKey"],
            state["Pid"],
        )


def fate(client: Any, instance: ContainerInstance) -> tuple[str, dict[str, Any]]:
    """What became of a container since a fault found it: running (the same start), restarted
    (a new namespace, which never had the fault), exited or removed."""
    from docker.errors import NotFound

    try:
        container = client.containers.get(instance.id)
    except NotFound:
        return "removed", {}
    state = container.attrs["State"]
    if state["Status"] == "restarting" or (
        state["Status"] in ("running", "paused") and state["StartedAt"] != instance.started_at
    ):
        return "restarted", {"restarts": container.attrs.get("RestartCount", 0)}
    if state["Status"] in ("running", "paused"):
        return "running", {}
    return "exited", ending(state)


def ending(state: dict[str, Any]) -> dict[str, Any]:
    """How a container's last run ended, from its State."""
    return {
        "exit_code": state.get("ExitCode"),
        "oom_killed": state.get("OOMKilled", False),
        "finished_at": state.get("FinishedAt", ""),
    }


def own_namespace_problem(container: Any, where: str) -> RunAborted | None:
    """Why a network or DNS fault must not enter this container's namespace, if it must not."""
    mode = container.attrs["HostConfig"].get("NetworkMode", "")
    netns = container.attrs["NetworkSettings"].get("SandboxKey") or ""
    shared = mode == "host" or mode.startswith("container:") or not netns
    if not shared:
        try:
            shared = os.stat(netns).st_ino == os.stat("/proc/self/ns/net").st_ino
        except OSError:
            shared = True
    if not shared:
        return None
    return RunAborted(
        f"container {container.name} has no network namespace of its own (network mode {mode!r})",
        where=where,
        hint="a network or DNS fault there would hit the host or another container: "
        "give it a network of its own, or leave it out of the selector",
    )


def host_peer(name: str, inside_container: Place) -> str:
    """The host end of the container's eth0 veth pair, checked to be a veth on a bridge (never the
    host's own interface). The peer's index comes from `eth0@ifN` as seen inside the namespace:
    sysfs would show the host's own eth0, since nsenter does not change the mount namespace."""
    inside = inside_container.run(["ip", "-o", "link", "show", "dev", "eth0"])
    peer = re.search(r"^\d+: eth0@if(\d+):", inside.stdout)
    if peer is None:
        raise RunAborted(
            f"container {name} has no eth0 paired with a host interface", hint="is it on a bridge network?"
        )
    for line in Place().run(["ip", "-o", "-d", "link", "show"]).stdout.splitlines():
        number, _, rest = line.partition(":")
        if number.strip() == peer.group(1):
            host = rest.split(":")[0].strip().split("@")[0]
            if re.search(r"\bveth\b", line) and " master " in line:
                return host
            raise RunAborted(f"the host end of {name}'s eth0 is {host}, which is not a veth on a bridge")
    raise RunAborted(f"no host interface with index {peer.group(1)} (the peer of {name}'s eth0)")

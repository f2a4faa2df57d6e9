"""The docker driver's target: containers that already run, selected by label or name, and only
those the experiment's allowlist admits. Talks to the Docker Engine API with the docker package.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from typing import Any

from docker.errors import NotFound

from chaoslib_ext.errors import RunAborted, SpecError
from chaoslib_ext.events import Timeline
from chaoslib_ext.netfault.kernel import KernelTarget, Namespace
from chaoslib_ext.netfault.namespace_dns import ContainerResolver
from chaoslib_ext.netfault.proxy import FaultHub
from chaoslib_ext.spec.model import Allowlist, ContainerSelector, Experiment, NetworkFault
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.undo import Place

STOP_TIMEOUT_SECONDS = 5  # docker stop: SIGTERM, then SIGKILL after this


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


def matches(container: Any, selector: ContainerSelector) -> bool:
    labels = container.labels or {}
    if any(labels.get(key) != value for key, value in selector.labels.items()):
        return False
    return selector.name is None or fnmatch.fnmatchcase(container.name, selector.name)


def select(client: Any, selector: ContainerSelector, allow: Allowlist | None, where: str) -> list[Any]:
    """Running containers matching the selector, sorted by name; refuse any outside the allowlist."""
    filters = (
        {"label": [f"{key}={value}" for key, value in selector.labels.items()]} if selector.labels else {}
    )
    found = sorted(
        (c for c in client.containers.list(filters=filters) if matches(c, selector)), key=lambda c: c.name
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


class DockerTarget:
    def __init__(self, experiment: Experiment, timeline: Timeline, ledger: Ledger) -> None:
        self.experiment = experiment
        self.timeline = timeline
        self.ledger = ledger
        self.engine = engine_endpoint()
        self.client = connect()
        self.hub: FaultHub | None = None  # started with the first DNS fault
        self.resolvers: dict[str, tuple[ContainerResolver, int]] = {}  # by namespace: (it, users)

    def containers(self, selector: ContainerSelector, where: str, own_network: bool = False) -> list[Any]:
        """The running containers a fault may hit; with own_network, each must have a network
        namespace of its own (network and DNS faults would otherwise hit the host or a neighbour)."""
        try:
            found = select(self.client, selector, self.experiment.allow, where)
        except SpecError as error:  # at run time the world changed under the plan: abort
            raise RunAborted(error.message, where=where, hint=error.hint) from None
        if own_network:
            for container in found:
                _check_own_namespace(container, where)
        return found

    def fate(self, instance: ContainerInstance) -> tuple[str, dict[str, Any]]:
        """What became of a container since a fault found it: running (the same start), restarted
        (a new namespace, which never had the fault), exited or removed."""
        try:
            container = self.client.containers.get(instance.id)
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

    def kernel_targets(self, fault: NetworkFault, where: str) -> list[KernelTarget]:
        """Each selected container's network namespace, entered with nsenter on its sandbox key;
        rules there match all of its TCP traffic (no port)."""
        assert fault.selector is not None, "spec gives docker network faults a selector"
        targets = []
        for container in self.containers(fault.selector, where, own_network=True):
            instance = ContainerInstance.of(container)
            host_veth = _host_peer(container.name, Place(sandbox=instance.netns))
            address = container.attrs["NetworkSettings"].get("IPAddress", "")
            namespace = Namespace(container.name, host_veth, "eth0", address, sandbox=instance.netns)
            targets.append(KernelTarget(container.name, namespace, None, instance))
        return targets

    def acquire_resolver(self, instance: ContainerInstance, resolv_conf: str) -> ContainerResolver:
        """The run's fault DNS server inside this start of a container (set up on first use,
        shared by the DNS faults that hit it at the same time)."""
        resolver, users = self.resolvers.get(instance.netns, (None, 0))
        if resolver is None:
            if self.hub is None:
                self.hub = FaultHub()
            resolver = ContainerResolver(self.hub, instance.name, instance.netns, resolv_conf, self.ledger)
        self.resolvers[instance.netns] = (resolver, users + 1)
        return resolver

    def resolver_of(self, instance: ContainerInstance) -> ContainerResolver:
        return self.resolvers[instance.netns][0]

    def release_resolver(self, instance: ContainerInstance) -> None:
        """One DNS fault is done with it; the last one takes the redirect out of the container
        (if that fails, the resolver stays, answering, for the clean-up to try again)."""
        resolver, users = self.resolvers[instance.netns]
        if users > 1:
            self.resolvers[instance.netns] = (resolver, users - 1)
            return
        resolver.close()
        del self.resolvers[instance.netns]

    def load_host(self, host: str) -> str:
        """Containers are reached as they are: the load's host is used as written."""
        return host

    def start(self) -> None:
        """Nothing to start: the containers are the user's."""

    def stop(self) -> None:
        """Close what DNS faults left open (a run that stopped mid-fault), then the client."""
        problems: list[str] = []
        for resolver, _ in self.resolvers.values():
            try:
                resolver.close()
            except Exception as error:  # keep going: every other container still needs its resolver back
                problems.append(str(error))
        self.resolvers.clear()
        if self.hub is not None:
            self.hub.stop()
        self.client.close()
        if problems:
            raise RunAborted(problems[0], hint="run `gameday recover` as root")


def ending(state: dict[str, Any]) -> dict[str, Any]:
    """How a container's last run ended, from its State."""
    return {
        "exit_code": state.get("ExitCode"),
        "oom_killed": state.get("OOMKilled", False),
        "finished_at": state.get("FinishedAt", ""),
    }


def _check_own_namespace(container: Any, where: str) -> None:
    mode = container.attrs["HostConfig"].get("NetworkMode", "")
    netns = container.attrs["NetworkSettings"].get("SandboxKey") or ""
    shared = mode == "host" or mode.startswith("container:") or not netns
    if not shared:
        try:
            shared = os.stat(netns).st_ino == os.stat("/proc/self/ns/net").st_ino
        except OSError:
            shared = True
    if shared:
        raise RunAborted(
            f"container {container.name} has no network namespace of its own (network mode {mode!r})",
            where=where,
            hint="a network or DNS fault there would hit the host or another container: "
            "give it a network of its own, or leave it out of the selector",
        )


def _host_peer(name: str, inside_container: Place) -> str:
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

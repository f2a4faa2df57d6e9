"""The docker driver's target: containers that already run, selected by label or name, and only
those the experiment's allowlist admits. Talks to the Docker Engine API with the docker package.
"""

from __future__ import annotations

import fnmatch
import subprocess
from typing import Any

from .errors import RunAborted, SpecError
from .ledger import Ledger
from .network.kernel import Namespace
from .spec.model import Allowlist, ContainerSelector, Experiment, NetworkFault
from .timeline import Timeline

STOP_TIMEOUT_SECONDS = 5  # docker stop: SIGTERM, then SIGKILL after this


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


class DockerTarget:
    def __init__(self, experiment: Experiment, timeline: Timeline, ledger: Ledger) -> None:
        self.experiment = experiment
        self.timeline = timeline
        self.ledger = ledger
        self.client = connect()

    def containers(self, selector: ContainerSelector, where: str) -> list[Any]:
        try:
            return select(self.client, selector, self.experiment.allow, where)
        except SpecError as error:  # at run time the world changed under the plan: abort
            raise RunAborted(error.message, where=where, hint=error.hint) from None

    def kernel_targets(self, fault: NetworkFault, where: str) -> list[tuple[str, Namespace, int | None]]:
        """Each selected container's network namespace, entered with nsenter on its main process;
        rules there match all of its TCP traffic (no port)."""
        assert fault.selector is not None, "spec gives docker network faults a selector"
        targets: list[tuple[str, Namespace, int | None]] = []
        for container in self.containers(fault.selector, where):
            pid = container.attrs["State"]["Pid"]
            enter = ("nsenter", "-t", str(pid), "-n")
            peer = subprocess.run(
                [*enter, "cat", "/sys/class/net/eth0/iflink"], capture_output=True, text=True
            )
            host_veth = _interface_by_index(peer.stdout.strip()) if peer.returncode == 0 else ""
            address = container.attrs["NetworkSettings"].get("IPAddress", "")
            targets.append(
                (container.name, Namespace(container.name, host_veth, "eth0", address, enter), None)
            )
        return targets

    def start(self) -> None:
        """Nothing to start: the containers are the user's."""

    def stop(self) -> None:
        self.client.close()


def _interface_by_index(index: str) -> str:
    """The host interface with this ifindex (the host end of a container's veth pair)."""
    for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines():
        number, name = line.split(":", 2)[:2]
        if number.strip() == index:
            return name.strip().split("@")[0]
    raise RunAborted(f"no host interface with index {index} (the container's veth peer)")

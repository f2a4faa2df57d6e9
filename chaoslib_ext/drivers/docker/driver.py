"""The docker driver: containers that already run, selected by label or name, and only those the
experiment's allowlist admits. Talks to the Docker Engine API with the docker package, which is
imported only here, when a run uses containers."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chaoslib_ext.drivers.base import BuildContext, Driver, RunContext
from chaoslib_ext.drivers.docker.aftermath import raise_if_lost, settle
from chaoslib_ext.drivers.docker.engine import (
    STOP_TIMEOUT_SECONDS,
    ContainerInstance,
    connect,
    ending,
    engine_endpoint,
    fate,
    host_peer,
    own_namespace_problem,
    select,
)
from chaoslib_ext.drivers.docker.selection import (
    SELECTION_PROPERTIES,
    ContainerSelector,
    parse_container_selection,
)
from chaoslib_ext.drivers.docker.undo import RestoreContainer
from chaoslib_ext.errors import RunAborted, SpecError
from chaoslib_ext.faults.base import (
    FaultSpec,
    LookupFault,
    Outcome,
    PartialFailure,
    Scope,
    Selection,
    Signal,
    Suspension,
    Target,
    TrafficFault,
)
from chaoslib_ext.netfault.kernel import KernelChanges, Namespace, is_root, netem_available
from chaoslib_ext.netfault.namespace_dns import ContainerResolver
from chaoslib_ext.netfault.proxy import FaultHub
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.undo import Place

UNDO = {"stop": "start", "pause": "unpause"}
SETTLE_SECONDS = STOP_TIMEOUT_SECONDS + 3  # how long a stop interrupted mid-call may still take
TOOLS_HINT = "install them (Debian: apt-get install util-linux iproute2 iptables conntrack)"


@dataclass
class Suspended:
    """Containers a stop or pause holds: (container, ledger entry), and the ones whose call was
    interrupted (dockerd may still carry it out)."""

    how: Suspension
    held: list[tuple[Any, int]] = field(default_factory=list)
    unsettled: set[str] = field(default_factory=set)


@dataclass
class Shaped:
    """Rules one network fault put in containers' namespaces, and which start of each."""

    kernel: KernelChanges
    instances: list[ContainerInstance] = field(default_factory=list)


class DockerDriver(Driver):
    name = "docker"
    kinds = frozenset(
        {
            "pod-kill",
            "container-stop",
            "container-pause",
            "container-restart",
            "network-loss",
            "network-reset",
            "network-bandwidth",
            "network-partition",
            "network-latency",
            "dns-error",
            "dns-delay",
            "dns-spoof",
        }
    )
    undo_kinds = frozenset({"docker", "iptables", "qdisc", "conntrack-dns"})
    selection_properties = SELECTION_PROPERTIES
    parse_selection = staticmethod(parse_container_selection)
    offline = False

    def __init__(self, experiment: Experiment) -> None:
        super().__init__(experiment)
        self._client: Any = None
        self.engine = engine_endpoint()
        self.ledger: Ledger | None = None
        self.hub: FaultHub | None = None  # started with the first DNS fault
        self.resolvers: dict[str, tuple[ContainerResolver, int]] = {}  # by namespace: (it, users)
        self.suspended: dict[str, Suspended] = {}
        self.shaped: dict[str, Shaped] = {}
        self.dns_held: dict[str, list[ContainerInstance]] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    # --- the file ---

    @classmethod
    def check_experiment(cls, experiment: Experiment, context: BuildContext) -> None:
        if experiment.allow is None:
            context.error(
                ("target",),
                "the docker driver needs target.allow: without it any container on the engine could be hit",
                'allow: {labels: {com.docker.compose.project: shop}} or allow: {names: ["shop-*"]}',
            )
        if experiment.services:
            context.error(
                ("services",),
                "the docker driver acts on containers that already run",
                "start them with docker or docker compose, and select them by label or name",
            )

    # --- plan ---

    def preflight(self) -> list[SpecError]:
        """Network and DNS faults act inside the containers' namespaces: root and its tools."""
        problems = []
        for index, fault in enumerate(self.experiment.faults):
            where, field_path = fault.where, f"faults[{index}].{fault.kind}"
            scope = fault.params.scope
            if scope == "process":
                continue
            if fault.params.kind == "network-latency" and not netem_available():
                problems.append(
                    SpecError(
                        f"{field_path}: network-latency in a container needs sch_netem, "
                        "which this kernel lacks",
                        where=where,
                        hint="use loss, reset, bandwidth or partition on containers here",
                    )
                )
            what, tools = (
                (
                    "network faults in containers need root (nsenter, iptables, tc)",
                    ("nsenter", "iptables", "ip", "tc"),
                )
                if scope == "network"
                else (
                    "DNS faults in containers need root (setns, nsenter, iptables, conntrack)",
                    ("nsenter", "iptables", "conntrack"),
                )
            )
            if not is_root():
                problems.append(SpecError(f"{field_path}: {what}", where=where, hint="run gameday as root"))
            missing = [tool for tool in tools if shutil.which(tool) is None]
            if missing:
                problems.append(
                    SpecError(
                        f"{field_path}: {what}; not found: {', '.join(missing)}", where=where, hint=TOOLS_HINT
                    )
                )
        return problems

    def lock_key(self) -> str:
        """The engine, by its ID, however it is reached."""
        return f"docker engine {self.client.info().get('ID', '')}"

    def candidates(self, fault: FaultSpec) -> tuple[str, ...]:
        assert fault.selection is not None
        return tuple(
            c.name for c in select(self.client, _selector(fault), self.experiment.allow, str(fault.where))
        )

    def describe_targets(self, fault: FaultSpec, size: int, total: int) -> str:
        matching = f"{size} of {total} running container(s) matching {_selector(fault).describe()}"
        if fault.params.scope == "network":
            return (
                f"on all TCP traffic of {matching}, in their network namespaces (nsenter; iptables/tc, "
                "kernel path)"
            )
        if fault.params.scope == "names":
            return (
                f"for the UDP lookups of {matching} (a redirect in their network namespaces to gameday's DNS "
                "server there, which forwards the rest to their own resolver)"
            )
        return matching

    def unit(self, fault: FaultSpec) -> str:
        return "packets"

    def group_name(self, fault: FaultSpec) -> str:
        return f"containers matching {_selector(fault).describe()}"

    # --- a run ---

    def start(self, run: RunContext) -> None:
        """Nothing to start: the containers are the user's."""
        self.ledger = run.ledger
        self.client  # noqa: B018  (connect now: a run without an engine stops here)

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
        if self._client is not None:
            self._client.close()
        if problems:
            raise RunAborted(problems[0], hint="run `gameday recover` as root")

    # --- what faults ask ---

    def targets(self, selection: Selection, scope: Scope, where: str) -> Sequence[Target]:
        """The running containers a fault may hit; for network and DNS faults each must have a
        network namespace of its own (a fault there would otherwise hit the host or a neighbour)."""
        assert isinstance(selection.selector, ContainerSelector)
        try:
            found = select(self.client, selection.selector, self.experiment.allow, where)
        except SpecError as error:  # at run time the world changed under the plan: abort
            raise RunAborted(error.message, where=where, hint=error.hint) from None
        if scope != "process":
            for container in found:
                problem = own_namespace_problem(container, where)
                if problem is not None:
                    raise problem
        return list(found)

    def kill(self, target: Target, signal: Signal) -> dict[str, Any]:
        from docker.errors import APIError, NotFound

        try:
            _container(target).kill(signal=signal)
            _container(target).reload()
        except (APIError, NotFound) as error:
            raise _failed("kill", target, error) from None
        return _state(target)

    def restart(self, target: Target) -> dict[str, Any]:
        from docker.errors import APIError, NotFound

        try:
            _container(target).restart(timeout=STOP_TIMEOUT_SECONDS)
            _container(target).reload()
        except (APIError, NotFound) as error:
            raise _failed("restart", target, error) from None
        return _state(target)

    def suspend(self, target: Target, how: Suspension, tag: str) -> dict[str, Any]:
        """Stop or pause, its undo in the ledger first; a call interrupted half-way (a signal) is
        kept, since dockerd may still carry it out."""
        from docker.errors import APIError, NotFound

        assert self.ledger is not None
        container = _container(target)
        suspended = self.suspended.setdefault(tag, Suspended(how))
        undo = RestoreContainer(UNDO[how], container.id, self.engine)
        try:
            with self.ledger.intent(f"container-{how} {container.name}", undo, NotFound) as entry:
                suspended.held.append((container, entry))  # before it acts
                suspended.unsettled.add(container.id)
                container.stop(timeout=STOP_TIMEOUT_SECONDS) if how == "stop" else container.pause()
        except NotFound as error:  # it is gone: nothing was done, nothing to undo
            suspended.held.pop()
            suspended.unsettled.discard(container.id)
            raise _failed(how, target, error) from None
        except APIError as error:
            raise _failed(how, target, error) from None
        suspended.unsettled.discard(container.id)
        container.reload()
        return _state(container)

    def resume(self, tag: str) -> list[Outcome]:
        suspended = self.suspended.pop(tag, None)
        if suspended is None:
            return []
        outcomes = []
        for container, entry in suspended.held:
            if container.id in suspended.unsettled:
                _settle(container)
            outcomes.append(_undo(container, suspended.how))
            assert self.ledger is not None
            self.ledger.done(entry)
        raise_if_lost(outcomes)
        return outcomes

    def impair(
        self, targets: Sequence[Target], impairment: TrafficFault, tag: str, seed: int
    ) -> list[Outcome]:
        """iptables rules and qdiscs in each container's network namespace (entered with nsenter
        on its sandbox key), matching all of its TCP traffic, each in the ledger first."""
        assert self.ledger is not None
        shaped = self.shaped.setdefault(tag, Shaped(KernelChanges(self.ledger)))
        done: list[Outcome] = []
        for target in targets:
            container = _container(target)
            instance = ContainerInstance.of(container)
            namespace = Namespace(
                instance.name,
                host_peer(instance.name, Place(sandbox=instance.netns)),
                "eth0",
                container.attrs["NetworkSettings"].get("IPAddress", ""),
                sandbox=instance.netns,
            )
            try:
                rules = shaped.kernel.add(namespace, impairment, None, tag)
            except RunAborted as error:
                raise PartialFailure(error, done) from None
            shaped.instances.append(instance)
            detail = {"path": "kernel", "namespace": instance.netns, "rules": rules}
            done.append(Outcome("inject", instance.name, detail))
        return done

    def restore(self, tag: str) -> list[Outcome]:
        shaped = self.shaped.get(tag)
        if shaped is None:
            return []
        shaped.kernel.remove()
        del self.shaped[tag]
        outcomes = settle(self.client, [(instance, {"path": "kernel"}) for instance in shaped.instances])
        raise_if_lost(outcomes)
        return outcomes

    def add_dns_rule(
        self, targets: Sequence[Target] | None, rule: LookupFault, tag: str, seed: int
    ) -> list[Outcome]:
        """The run's fault DNS server inside each container (set up on first use, shared by the DNS
        faults that hit it at the same time), with this fault's rule."""
        rng = random.Random(seed)
        held = self.dns_held.setdefault(tag, [])
        done: list[Outcome] = []
        for container in targets or ():
            instance = ContainerInstance.of(container)
            try:
                resolver = self._acquire_resolver(instance, _container(container).attrs["ResolvConfPath"])
            except RunAborted as error:
                raise PartialFailure(error, done) from None
            held.append(instance)
            resolver.server.add(tag, rule, seed=rng.randrange(2**31))
            detail = {"names": list(rule.patterns), "dns": resolver.address, "upstream": resolver.upstream}
            done.append(Outcome("inject", instance.name, detail))
        return done

    def remove_dns_rule(self, tag: str) -> list[Outcome]:
        """Each container on its own: one that cannot be put back stays listed for the clean-up to
        try again, and does not keep the others from being put back."""
        held = self.dns_held.get(tag, [])
        results, problems = [], []
        for instance in list(held):
            hits = self.resolvers[instance.netns][0].server.remove(tag)
            try:
                self._release_resolver(instance)
            except RunAborted as error:
                problems.append(error)
                continue
            held.remove(instance)
            results.append((instance, hits))
        if not held:
            self.dns_held.pop(tag, None)
        outcomes = settle(self.client, results)
        if problems:
            raise PartialFailure(problems[0], outcomes)
        raise_if_lost(outcomes)
        return outcomes

    def _acquire_resolver(self, instance: ContainerInstance, resolv_conf: str) -> ContainerResolver:
        assert self.ledger is not None
        resolver, users = self.resolvers.get(instance.netns, (None, 0))
        if resolver is None:
            if self.hub is None:
                self.hub = FaultHub()
            resolver = ContainerResolver(self.hub, instance.name, instance.netns, resolv_conf, self.ledger)
        self.resolvers[instance.netns] = (resolver, users + 1)
        return resolver

    def _release_resolver(self, instance: ContainerInstance) -> None:
        """One DNS fault is done with it; the last one takes the redirect out of the container
        (if that fails, the resolver stays, answering, for the clean-up to try again)."""
        resolver, users = self.resolvers[instance.netns]
        if users > 1:
            self.resolvers[instance.netns] = (resolver, users - 1)
            return
        resolver.close()
        del self.resolvers[instance.netns]

    def fate(self, instance: ContainerInstance) -> tuple[str, dict[str, Any]]:
        return fate(self.client, instance)


def _container(target: Target) -> Any:
    """A target of this driver: a docker-py Container (which has no type information)."""
    return target


def _selector(fault: FaultSpec) -> ContainerSelector:
    assert fault.selection is not None and isinstance(fault.selection.selector, ContainerSelector)
    return fault.selection.selector


def _state(container: Any) -> dict[str, Any]:
    return {"id": container.short_id, "status": container.status}


def _failed(what: str, target: Any, error: Any) -> RunAborted:
    return RunAborted(f"{what} {target.name} failed: {getattr(error, 'explanation', None) or error}")


def _undo(container: Any, how: Suspension) -> Outcome:
    """Start or unpause it, unless something else did already; say if it is gone instead."""
    from docker.errors import APIError, NotFound

    try:
        container.reload()
        state = container.attrs["State"]
        if how == "pause" and state["Status"] not in ("paused", "running"):
            return Outcome("exited", container.name, ending(state))
        if how == "stop" and container.status != "running":
            container.start()
        elif how == "pause" and container.status == "paused":
            container.unpause()
        container.reload()
    except NotFound:
        return Outcome("removed", container.name, {"id": container.short_id})
    except APIError as error:
        raise RunAborted(
            f"could not {UNDO[how]} {container.name}: {error.explanation}", hint="run `gameday recover`"
        ) from None
    return Outcome(UNDO[how], container.name, _state(container))


def _settle(container: Any) -> None:
    """A stop (or pause) interrupted mid-call may still be carried out by dockerd: wait until the
    container is no longer running, for as long as that can take, before deciding what to undo."""
    from docker.errors import NotFound

    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        try:
            container.reload()
        except NotFound:
            return  # gone: the undo says so
        if container.status != "running":
            return
        time.sleep(0.1)

"""The kubernetes driver: pods in a cluster. pod-kill goes through chaostoolkit-kubernetes'
terminate_pods on exactly the pods gameday chose; network and DNS faults are Chaos Mesh objects
gameday builds and creates (and deletes) through chaostoolkit-kubernetes' custom-object actions.
The kubernetes package is imported only here, when an experiment names this driver."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chaoslib_ext.drivers.base import BuildContext, Driver, RunContext
from chaoslib_ext.drivers.kubernetes.chaos_mesh import (
    GROUP,
    MANAGED_BY,
    PLURALS,
    VERSION,
    chaos_object,
    refusal,
)
from chaoslib_ext.drivers.kubernetes.cluster import REQUEST_TIMEOUT, Cluster, connect, failure
from chaoslib_ext.drivers.kubernetes.objects import NotCreated, ObjectAway, create, list_labelled
from chaoslib_ext.drivers.kubernetes.pods import Pod, PodWatch, check_reachable, labels_of, running_pods
from chaoslib_ext.drivers.kubernetes.selection import SELECTION_PROPERTIES, PodSelector, parse_pod_selection
from chaoslib_ext.drivers.kubernetes.undo import GONE_WAIT_SECONDS, DeleteClusterObject
from chaoslib_ext.errors import RunAborted, SpecError
from chaoslib_ext.faults.base import (
    FaultSpec,
    LookupFault,
    Outcome,
    Scope,
    Selection,
    Signal,
    Target,
    TrafficFault,
)
from chaoslib_ext.faults.injection import tag_of
from chaoslib_ext.faults.pod_kill import PodKill
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.state.ledger import Ledger

REFUSED = {  # what Chaos Mesh or the API cannot express, and why
    "network-reset": "Chaos Mesh's NetworkChaos has no connection reset",
    "dns-delay": "Chaos Mesh's DNSChaos has no delay (only error and random answers)",
    "dns-spoof": "Chaos Mesh's DNSChaos answers random addresses, not the ones an experiment names",
    "container-stop": "a pod is not stopped and started again: use pod-kill (its controller replaces it)",
    "container-pause": "a pod is not paused through the API: use pod-kill",
    "container-restart": "use pod-kill: its controller starts a new pod",
}
RETRIES = 3  # a revert tries this many times, a second apart, while the API server is away


@dataclass
class Held:
    """A Chaos Mesh object a fault made, and its ledger entry."""

    entry: int
    undo: DeleteClusterObject


class KubernetesDriver(Driver):
    name = "kubernetes"
    kinds = frozenset(
        {"pod-kill", "network-latency", "network-loss", "network-bandwidth", "network-partition", "dns-error"}
    )
    refused = REFUSED
    undo_kinds = frozenset({"kubernetes-object"})
    selection_properties = SELECTION_PROPERTIES
    parse_selection = staticmethod(parse_pod_selection)
    offline = False

    def __init__(self, experiment: Experiment) -> None:
        super().__init__(experiment)
        self.settings = experiment.target_settings
        self._cluster: Cluster | None = None
        self.ledger: Ledger | None = None
        self.run: RunContext | None = None
        self.held: dict[str, list[Held]] = {}
        self.watches: list[PodWatch] = []
        self.notes: list[str] = []

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = connect(self.settings.get("context"))
        return self._cluster

    @property
    def namespace(self) -> str:
        return self.settings.get("namespace", "default")

    # --- the file ---

    @classmethod
    def check_experiment(cls, experiment: Experiment, context: BuildContext) -> None:
        allow = experiment.allow
        if allow is None or not (allow.namespaces or allow.labels):
            context.error(
                ("target",),
                "the kubernetes driver needs target.allow (namespaces, labels): else any pod could be hit",
                "allow: {namespaces: [shop]} or allow: {labels: {app.kubernetes.io/part-of: shop}}",
            )
        if experiment.services:
            context.error(
                ("services",),
                "the kubernetes driver acts on pods that already run",
                "deploy them to the cluster, and select them by labels or workload",
            )
        for index, fault in enumerate(experiment.faults):
            why = refusal(fault.params)
            if isinstance(fault.params, PodKill) and fault.params.signal not in ("SIGKILL", "SIGTERM"):
                why = (
                    "a pod is deleted: SIGTERM (its grace period) or SIGKILL (grace 0) is what the API sends"
                )
            if why:
                context.error(("faults", index, fault.kind), f"{fault.kind} on Kubernetes: {why}")
            selector = fault.selection.selector if fault.selection else None
            if (
                allow is not None
                and allow.namespaces
                and isinstance(selector, PodSelector)
                and selector.namespace not in allow.namespaces
            ):
                context.error(
                    ("faults", index, fault.kind),
                    f"namespace {selector.namespace} is outside target.allow.namespaces",
                    "allowed: " + ", ".join(allow.namespaces),
                )

    # --- plan ---

    def preflight(self) -> list[SpecError]:
        """The cluster is reachable, the namespaces exist, this user may do what the faults need
        (SelfSubjectAccessReview) and Chaos Mesh is there for network and DNS faults."""
        cluster = self.cluster
        namespaces = sorted({self.namespace, *(s.namespace for s in self._selectors())})
        for namespace in namespaces:
            check_reachable(cluster, namespace)
        problems = []
        for index, fault in enumerate(self.experiment.faults):
            for verb, group, resource, namespace in permissions_needed(fault):
                if not self._may(verb, group, resource, namespace):
                    problems.append(
                        SpecError(
                            f"faults[{index}].{fault.kind}: this user cannot {verb} {resource}"
                            f"{'.' + group if group else ''} in namespace {namespace}",
                            where=fault.where,
                            hint="grant it in a Role (the README lists what each fault needs)",
                        )
                    )
        scopes = {fault.params.scope for fault in self.experiment.faults}
        if scopes & {"network", "names"}:
            problems += self._chaos_mesh_problems("names" in scopes)
        return problems

    def _selectors(self) -> list[PodSelector]:
        return [
            f.selection.selector
            for f in self.experiment.faults
            if f.selection and isinstance(f.selection.selector, PodSelector)
        ]

    def _may(self, verb: str, group: str, resource: str, namespace: str) -> bool:
        from kubernetes import client

        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, group=group, resource=resource, namespace=namespace
                )
            )
        )
        try:
            answer = client.AuthorizationV1Api(self.cluster.api).create_self_subject_access_review(
                review, _request_timeout=REQUEST_TIMEOUT
            )
        except Exception as error:
            raise failure(error, "checking permissions", self.cluster.server) from None
        return answer.status is not None and bool(answer.status.allowed)

    def _chaos_mesh_problems(self, dns: bool) -> list[SpecError]:
        from kubernetes import client

        groups = client.ApisApi(self.cluster.api).get_api_versions(_request_timeout=REQUEST_TIMEOUT)
        if not any(group.name == GROUP for group in groups.groups):
            return [
                SpecError(
                    "network and DNS faults on Kubernetes need Chaos Mesh, which this cluster lacks "
                    f"(no {GROUP} API group)",
                    hint="install it (helm install chaos-mesh chaos-mesh/chaos-mesh -n chaos-mesh); "
                    "pod-kill works without it",
                )
            ]
        components = ["chaos-daemon", *(["chaos-dns-server"] if dns else [])]
        problems = []
        for component in components:
            try:
                pods = client.CoreV1Api(self.cluster.api).list_pod_for_all_namespaces(
                    label_selector=f"app.kubernetes.io/component={component}",
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except Exception:  # not allowed to look across namespaces: say so, do not guess
                self.notes.append(
                    f"could not check that Chaos Mesh's {component} is running (not allowed to list it)"
                )
                continue
            if not any(p.status is not None and p.status.phase == "Running" for p in pods.items):
                problems.append(
                    SpecError(
                        f"Chaos Mesh is installed but no {component} pod is running",
                        hint="kubectl get pods -n chaos-mesh"
                        + (
                            "; DNSChaos needs --set dnsServer.create=true"
                            if component == "chaos-dns-server"
                            else ""
                        ),
                    )
                )
        return problems

    def lock_key(self) -> str:
        return f"kubernetes {self.cluster.server} namespace {self.namespace}"

    def candidates(self, fault: FaultSpec) -> tuple[str, ...]:
        return tuple(pod.name for pod in self._pods(fault.selection, str(fault.where)))

    def _pods(self, selection: Selection | None, where: str) -> list[Pod]:
        assert selection is not None and isinstance(selection.selector, PodSelector)
        return running_pods(self.cluster, selection.selector, self.experiment.allow, where)

    def describe_targets(self, fault: FaultSpec, size: int, total: int) -> str:
        assert fault.selection is not None
        pods = f"{size} of {total} running pod(s), {fault.selection.selector.describe()}"
        if fault.params.scope == "process":
            return f"{pods} (deleted through the API, its controller replaces it)"
        kind = "DNSChaos" if fault.params.scope == "names" else "NetworkChaos"
        where = "for the lookups of" if fault.params.scope == "names" else "on the traffic leaving"
        return f"{where} {pods}, as a Chaos Mesh {kind} naming exactly them"

    def unit(self, fault: FaultSpec) -> str:
        return "packets"

    def host_warnings(self) -> list[str]:
        return list(self.notes)

    # --- a run ---

    def start(self, run: RunContext) -> None:
        """Watch the pods that kills may hit, so that the timeline sees their replacements."""
        self.run, self.ledger = run, run.ledger
        for fault in self.experiment.faults:
            if fault.params.scope != "process" or fault.selection is None:
                continue
            selector = fault.selection.selector
            assert isinstance(selector, PodSelector)
            labels = selector.label_selector(labels_of(self.cluster, selector))
            if not any((w.namespace, w.label_selector) == (selector.namespace, labels) for w in self.watches):
                watch = PodWatch(self.cluster, selector.namespace, labels, run.timeline)
                watch.start()
                self.watches.append(watch)

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()
        self.watches = []

    # --- what faults ask ---

    def targets(self, selection: Selection, scope: Scope, where: str) -> Sequence[Target]:
        try:
            return self._pods(selection, where)
        except SpecError as error:  # at run time the world changed under the plan: abort
            raise RunAborted(error.message, where=where, hint=error.hint) from None

    def kill(self, target: Target, signal: Signal) -> dict[str, Any]:
        """Delete exactly this pod through chaosk8s' terminate_pods (an anchored name pattern):
        SIGTERM with its grace period, SIGKILL with none."""
        from chaosk8s.pod.actions import terminate_pods
        from chaoslib.exceptions import ActivityFailed

        assert isinstance(target, Pod)
        grace = 0 if signal == "SIGKILL" else -1
        try:
            deleted = terminate_pods(
                name_pattern=f"^{re.escape(target.name)}$",
                all=True,
                grace_period=grace,
                ns=target.namespace,
                secrets=self.cluster.secrets(),
            )
        except ActivityFailed as error:
            raise RunAborted(
                f"could not delete pod {target.namespace}/{target.name}: {str(error)[:300]}"
            ) from None
        except Exception as error:
            raise failure(
                error, f"deleting pod {target.namespace}/{target.name}", self.cluster.server
            ) from None
        if deleted != [target.name]:
            raise RunAborted(f"deleting pod {target.name} deleted {deleted or 'nothing'}")
        return {
            "namespace": target.namespace,
            "uid": target.uid,
            "grace": "0s" if grace == 0 else "the pod's",
        }

    def impair(
        self, targets: Sequence[Target], impairment: TrafficFault, tag: str, seed: int
    ) -> list[Outcome]:
        return self._chaos(targets, impairment, tag)

    def restore(self, tag: str) -> list[Outcome]:
        return self._take_away(tag)

    def add_dns_rule(
        self, targets: Sequence[Target] | None, rule: LookupFault, tag: str, seed: int
    ) -> list[Outcome]:
        return self._chaos(targets or [], rule, tag)

    def remove_dns_rule(self, tag: str) -> list[Outcome]:
        return self._take_away(tag)

    def _chaos(self, targets: Sequence[Target], fault: TrafficFault | LookupFault, tag: str) -> list[Outcome]:
        """One Chaos Mesh object on exactly these pods, in the ledger before it is created (by
        name and run label), then again with the uid the API server gave it."""
        assert self.ledger is not None
        pods = [t for t in targets if isinstance(t, Pod)]
        if not pods:
            return []
        namespace, run_id = pods[0].namespace, self.ledger.run_id
        name = f"gameday-{hashlib.sha1(run_id.encode()).hexdigest()[:10]}-{tag}"
        chaos = chaos_object(
            fault, name, namespace, [p.name for p in pods], run_id, self._window(tag), time.time()
        )
        cluster = self.cluster
        undo = DeleteClusterObject(
            cluster.server, cluster.context, GROUP, VERSION, chaos.plural, namespace, name, run_id[-63:]
        )
        with self.ledger.intent(f"{chaos.kind} {namespace}/{name}", undo, NotCreated) as entry:
            self.held.setdefault(tag, []).append(
                Held(entry, undo)
            )  # before it acts: a signal now leaves it to revert
            try:
                made = create(cluster, chaos)
            except NotCreated:
                self.held[tag].pop()  # refused: nothing to undo (any other failure may have made it)
                raise
        known = DeleteClusterObject(
            undo.server,
            undo.context,
            GROUP,
            VERSION,
            chaos.plural,
            namespace,
            name,
            undo.run,
            made["metadata"]["uid"],
        )
        self.held[tag][-1] = Held(self.ledger.record(f"{chaos.kind} {namespace}/{name}", known), known)
        self.ledger.done(entry)
        detail = {
            "object": f"{chaos.kind} {namespace}/{name}",
            "uid": known.uid,
            "pods": [p.name for p in pods],
        }
        return [Outcome("inject", pod.name, detail) for pod in pods]

    def _window(self, tag: str) -> float:
        """How long the fault is planned to last: its duration, or the rest of the fault phase."""
        for index, fault in enumerate(self.experiment.faults):
            if tag_of(index) == tag:
                return fault.duration or max(0.0, self.experiment.phases.fault - fault.after)
        return self.experiment.phases.fault

    def _take_away(self, tag: str) -> list[Outcome]:
        """Delete what the fault made, trying again while the API server is away; what cannot be
        deleted stays in the ledger for `gameday recover`."""
        assert self.ledger is not None
        outcomes, problems = [], []
        for held in list(self.held.get(tag, [])):
            problem = self._delete(held.undo)
            if problem is None:
                self.ledger.done(held.entry)
                self.held[tag].remove(held)
                outcomes.append(
                    Outcome(
                        "revert",
                        f"{held.undo.plural} {held.undo.namespace}/{held.undo.name}",
                        {"uid": held.undo.uid},
                    )
                )
            else:
                problems.append(problem)
        if problems:
            raise RunAborted(problems[0], hint="run `gameday recover` once the API server answers")
        self.held.pop(tag, None)
        return outcomes

    def _delete(self, undo: DeleteClusterObject) -> str | None:
        problem: str | None = None
        for attempt in range(RETRIES):
            try:
                problem = ObjectAway(undo, self.cluster).take_away(GONE_WAIT_SECONDS)
            except RunAborted as error:
                problem = error.message
            if problem is None or "stuck terminating" in problem:
                return problem
            if attempt + 1 < RETRIES:
                time.sleep(1.0)
        return problem

    @classmethod
    def sweep(cls) -> tuple[list[str], list[str]]:
        """`gameday recover --kubernetes`: Chaos Mesh objects gameday made that outlived their run
        (their expiry passed), found by label in every namespace the current context may list, wherever
        the run that made them ran; deleted. Returns (undone, failed)."""
        from chaoslib_ext.drivers.kubernetes.chaos_mesh import EXPIRES, RUN_LABEL

        cluster = connect()
        selector = ",".join(f"{key}={value}" for key, value in MANAGED_BY.items())
        moment = time.time()
        undone: list[str] = []
        failed: list[str] = []
        for plural in PLURALS.values():
            for item in list_labelled(cluster, plural, selector):
                metadata = item["metadata"]
                expires = float(metadata.get("annotations", {}).get(EXPIRES, "0") or 0)
                if expires > moment:
                    continue  # a run may still hold it
                undo = DeleteClusterObject(
                    cluster.server,
                    cluster.context,
                    GROUP,
                    VERSION,
                    plural,
                    metadata["namespace"],
                    metadata["name"],
                    metadata.get("labels", {}).get(RUN_LABEL, ""),
                    metadata["uid"],
                )
                problem = ObjectAway(undo, cluster).take_away(GONE_WAIT_SECONDS)
                (failed if problem else undone).append(problem or f"{undo.describe()} (run {undo.run})")
        return undone, failed


def permissions_needed(fault: FaultSpec) -> list[tuple[str, str, str, str]]:
    """(verb, API group, resource, namespace) a fault needs: checked before a run (preflight),
    and granted by the Role of a scheduled run (schedule)."""
    assert fault.selection is not None
    selector = fault.selection.selector
    assert isinstance(selector, PodSelector)
    ns = selector.namespace
    needs = [("list", "", "pods", ns)]
    if selector.workload is not None:
        needs.append(("get", "apps", f"{selector.workload[0]}s", ns))
    if fault.params.scope == "process":
        needs += [("delete", "", "pods", ns), ("watch", "", "pods", ns)]
    else:
        plural = PLURALS["DNSChaos" if fault.params.scope == "names" else "NetworkChaos"]
        needs += [(verb, GROUP, plural, ns) for verb in ("create", "get", "delete")]
    return needs

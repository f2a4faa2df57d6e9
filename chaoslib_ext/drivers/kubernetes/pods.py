"""Pods as the kubernetes driver sees them: the ones a selector names now (Running, not already
terminating, inside the allowlist), and a watch that puts their lives on the run's timeline
(terminating, deleted, a replacement created, Ready), so that recovery is measured on the
cluster's own."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

from chaoslib_ext.drivers.kubernetes.cluster import REQUEST_TIMEOUT, Cluster, failure
from chaoslib_ext.drivers.kubernetes.selection import PodSelector
from chaoslib_ext.errors import RunAborted, SpecError
from chaoslib_ext.events import Timeline
from chaoslib_ext.spec.model import Allowlist

WATCH_SECONDS = 5  # each watch request; it is renewed until the run stops


@dataclass(frozen=True)
class Pod:
    """A pod a fault may hit."""

    name: str
    namespace: str
    uid: str
    labels: dict[str, str]


def labels_of(cluster: Cluster, selector: PodSelector) -> dict[str, str]:
    """The labels that pick the selector's pods: its own, or its workload's selector."""
    if selector.workload is None:
        return selector.labels
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    kind, name = selector.workload
    apps = client.AppsV1Api(cluster.api)
    read = apps.read_namespaced_deployment if kind == "deployment" else apps.read_namespaced_stateful_set
    try:
        workload = read(name, selector.namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as error:
        if error.status == 404:
            raise SpecError(
                f"no {kind} {name} in namespace {selector.namespace}",
                hint=f"check with `kubectl get {kind} -n {selector.namespace}`",
            ) from None
        raise failure(error, f"reading {kind} {selector.namespace}/{name}", cluster.server) from None
    except Exception as error:
        raise failure(error, f"reading {kind} {selector.namespace}/{name}", cluster.server) from None
    spec: Any = workload.spec  # a V1DeploymentSpec or V1StatefulSetSpec: both have a selector
    return dict(spec.selector.match_labels or {})


def running_pods(cluster: Cluster, selector: PodSelector, allow: Allowlist | None, where: str) -> list[Pod]:
    """The Running pods the selector names, not already terminating, sorted by name; SpecError if
    none, or if one is outside the allowlist."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    labels = labels_of(cluster, selector)
    try:
        found = client.CoreV1Api(cluster.api).list_namespaced_pod(
            selector.namespace,
            label_selector=selector.label_selector(labels),
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as error:
        if error.status == 404:
            raise SpecError(f"namespace {selector.namespace} not found", where=where) from None
        raise failure(error, f"listing pods in {selector.namespace}", cluster.server) from None
    except Exception as error:
        raise failure(error, f"listing pods in {selector.namespace}", cluster.server) from None
    pods = sorted(
        (
            Pod(str(p.metadata.name), selector.namespace, str(p.metadata.uid), dict(p.metadata.labels or {}))
            for p in found.items
            if p.metadata is not None
            and p.status is not None
            and p.status.phase == "Running"
            and p.metadata.deletion_timestamp is None
        ),
        key=lambda pod: pod.name,
    )
    if not pods:
        raise SpecError(
            f"no Running pod matches {selector.describe()}",
            where=where,
            hint=f"kubectl get pods -n {selector.namespace} -l {selector.label_selector(labels)}",
        )
    if allow is not None:
        for pod in pods:
            if not _admitted(allow, selector.namespace, pod.labels):
                raise SpecError(
                    f"pod {selector.namespace}/{pod.name} matches, but is outside target.allow",
                    where=where,
                    hint="narrow the selector or widen target.allow",
                )
    return pods


def _admitted(allow: Allowlist, namespace: str, labels: dict[str, str]) -> bool:
    in_namespace = not allow.namespaces or namespace in allow.namespaces
    labelled = all(labels.get(key) == value for key, value in allow.labels.items())
    return in_namespace and labelled


class PodWatch:
    """Watches the pods of one selector until stopped, and tells the timeline what became of
    them: terminating, deleted, created (a replacement), ready."""

    def __init__(self, cluster: Cluster, namespace: str, label_selector: str, timeline: Timeline) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.label_selector = label_selector
        self.timeline = timeline
        self.known: dict[str, tuple[bool, bool]] = {}  # name -> (terminating, ready)
        self.primed = threading.Event()  # the pods that were there at the start are known
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)

    def start(self) -> None:
        self.thread.start()
        self.primed.wait(timeout=10)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=WATCH_SECONDS + 5)

    def _run(self) -> None:
        from kubernetes import client, watch

        api = client.CoreV1Api(self.cluster.api)
        first = True
        while not self.stopping.is_set():
            stream: Any = cast(Any, watch.Watch)()  # the client's watch has no type information
            try:
                for event in stream.stream(
                    api.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.label_selector,
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=(REQUEST_TIMEOUT[0], WATCH_SECONDS + 5),
                ):
                    self._seen(event["type"], event["object"], first)
                    if self.stopping.is_set():
                        stream.stop()
                        break
            except Exception as error:  # the API server away: say so once, try again
                self.timeline.add("service", "watch-failed", self.namespace, error=repr(error)[:200])
                self.stopping.wait(1.0)
            if first:
                first = False
                self.primed.set()

    def _seen(self, kind: str, pod: Any, priming: bool) -> None:
        name = pod.metadata.name
        terminating = pod.metadata.deletion_timestamp is not None
        conditions = (pod.status.conditions if pod.status is not None else None) or []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        before = self.known.get(name)
        if kind == "DELETED":
            self.known.pop(name, None)
            self.timeline.add("service", "deleted", name, namespace=self.namespace)
            return
        self.known[name] = (terminating, ready)
        if before is None:
            if not priming:
                self.timeline.add("service", "created", name, namespace=self.namespace)
            if ready and not priming:
                self.timeline.add("service", "ready", name, namespace=self.namespace)
            return
        if terminating and not before[0]:
            self.timeline.add("service", "terminating", name, namespace=self.namespace)
        if ready and not before[1]:
            self.timeline.add("service", "ready", name, namespace=self.namespace)


def check_reachable(cluster: Cluster, namespace: str) -> None:
    """The namespace exists (SpecError if not; RunAborted if the API server cannot be reached)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(cluster.api).read_namespace(namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as error:
        if error.status == 403:
            return  # a namespaced role may not read namespaces: the pods will say what is there
        if error.status == 404:
            raise SpecError(
                f"namespace {namespace} not found on {cluster.server}",
                hint="check target.namespace with `kubectl get namespaces`",
            ) from None
        raise failure(error, f"reading namespace {namespace}", cluster.server) from None
    except RunAborted:
        raise
    except Exception as error:
        raise failure(error, f"reading namespace {namespace}", cluster.server) from None

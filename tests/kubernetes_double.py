"""A stateful Kubernetes API double over real HTTP on 127.0.0.1, for the real `kubernetes` client
and the real chaostoolkit-kubernetes functions.

It keeps what gameday touches: namespaces, Deployments with their ReplicaSet and pods (a
controller replaces a deleted pod after a delay and makes it Ready after another), label
selectors on lists, watches on pods, custom objects (uid, resourceVersion, labels, finalizers that
keep an object terminating), API group discovery, SelfSubjectAccessReviews answered from a
permission table that also guards the requests themselves, and bearer-token authentication.
It is not a cluster: nothing runs in the pods and no Chaos Mesh acts on the objects.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CHAOS_MESH_GROUP = "chaos-mesh.org"


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: a=b, a==b, a!=b, comma-separated (all must hold)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
    return True


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Workload:
    """A Deployment (or StatefulSet) and the ReplicaSet that keeps `replicas` pods of it."""

    kind: str  # Deployment | StatefulSet
    namespace: str
    name: str
    labels: dict[str, str]
    replicas: int
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def replica_set(self) -> str:
        return f"{self.name}-5d8f7c" if self.kind == "Deployment" else self.name


class Cluster:
    """The state, and the controller that keeps the workloads' pods."""

    def __init__(self, start_delay: float = 0.3, ready_delay: float = 0.3, grace: float = 0.5) -> None:
        self.lock = threading.RLock()
        self.start_delay, self.ready_delay, self.grace = start_delay, ready_delay, grace
        self.namespaces: set[str] = {"default"}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.workloads: list[Workload] = []
        self.objects: dict[
            tuple[str, str, str, str, str], dict[str, Any]
        ] = {}  # group, version, plural, ns, name
        self.groups: set[str] = {"apps", "authorization.k8s.io"}
        self.denied: set[tuple[str, str, str]] = set()  # (verb, group, resource) this user may not do
        self.token: str | None = None  # when set, requests must carry it
        self.down = False  # the API server answers 503 to everything
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.deletes: list[tuple[str, float | None]] = []  # (pod, grace period asked) of every pod deletion
        self.watchers: list[queue.Queue[dict[str, Any] | None]] = []
        self.revision = itertools.count(1)
        self.serial = itertools.count(1)
        self.timers: list[threading.Timer] = []

    # --- setting up ---

    def add_namespace(self, name: str) -> None:
        with self.lock:
            self.namespaces.add(name)

    def add_workload(
        self, kind: str, namespace: str, name: str, labels: dict[str, str], replicas: int
    ) -> Workload:
        workload = Workload(kind, namespace, name, labels, replicas)
        with self.lock:
            self.namespaces.add(namespace)
            self.workloads.append(workload)
            for index in range(replicas):
                self._new_pod(workload, ready=True, index=index)
        return workload

    def add_pod(
        self, namespace: str, name: str, labels: dict[str, str], phase: str = "Running"
    ) -> dict[str, Any]:
        """A pod no controller keeps (it is not replaced when deleted)."""
        with self.lock:
            self.namespaces.add(namespace)
            pod = self._pod(namespace, name, labels, None)
            pod["status"] = {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": str(phase == "Running")}],
            }
            self.pods[(namespace, name)] = pod
            self._emit("ADDED", pod)
            return pod

    def install_chaos_mesh(self, dns_server: bool = True) -> None:
        with self.lock:
            self.groups.add(CHAOS_MESH_GROUP)
        labels = {"app.kubernetes.io/component": "chaos-daemon"}
        self.add_pod("chaos-mesh", "chaos-daemon-x1", labels)
        if dns_server:
            self.add_pod(
                "chaos-mesh", "chaos-dns-server-x1", {"app.kubernetes.io/component": "chaos-dns-server"}
            )

    # --- reading it (what the tests look at from outside) ---

    def live_pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [
                p
                for (ns, _), p in sorted(self.pods.items())
                if ns == namespace and matches(p["metadata"]["labels"], selector)
            ]

    def objects_of(self, plural: str) -> list[dict[str, Any]]:
        with self.lock:
            return [o for (_, _, p, _, _), o in sorted(self.objects.items()) if p == plural]

    # --- the controller ---

    def _pod(
        self, namespace: str, name: str, labels: dict[str, str], owner: Workload | None
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(next(self.revision)),
            "labels": dict(labels),
            "creationTimestamp": now_text(),
        }
        if owner is not None:
            kind = "ReplicaSet" if owner.kind == "Deployment" else "StatefulSet"
            metadata["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "name": owner.replica_set,
                    "uid": owner.uid,
                    "controller": True,
                }
            ]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {
                "containers": [{"name": "app", "image": "gameday-demo"}],
                "terminationGracePeriodSeconds": 30,
            },
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
        }

    def _new_pod(self, workload: Workload, ready: bool, index: int | None = None) -> dict[str, Any]:
        if workload.kind == "StatefulSet":
            assert index is not None
            name = f"{workload.name}-{index}"
        else:
            name = f"{workload.replica_set}-{next(self.serial):05d}"
        pod = self._pod(workload.namespace, name, workload.labels, workload)
        pod["metadata"]["labels"]["pod-template-hash"] = "5d8f7c"
        self.pods[(workload.namespace, name)] = pod
        if ready:
            pod["status"] = self._ready_status(pod)
        self._emit("ADDED", pod)
        if not ready:
            self._later(self.start_delay, self._started, workload.namespace, name)
        return pod

    def _ready_status(self, pod: dict[str, Any]) -> dict[str, Any]:
        return {
            "phase": "Running",
            "podIP": f"10.0.0.{next(self.serial) % 250 + 2}",
            "conditions": [{"type": "Ready", "status": "True"}],
        }

    def _started(self, namespace: str, name: str) -> None:
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return
            pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
            self._touch(pod)
            self._emit("MODIFIED", pod)
        self._later(self.ready_delay, self._ready, namespace, name)

    def _ready(self, namespace: str, name: str) -> None:
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return
            pod["status"] = self._ready_status(pod)
            self._touch(pod)
            self._emit("MODIFIED", pod)

    def delete_pod(self, namespace: str, name: str, grace: float | None) -> dict[str, Any] | None:
        with self.lock:
            self.deletes.append((name, grace))
            pod = self.pods.get((namespace, name))
            if pod is None:
                return None
            if pod["metadata"].get("deletionTimestamp") is None:
                pod["metadata"]["deletionTimestamp"] = now_text()
                self._touch(pod)
                self._emit("MODIFIED", pod)
                owner = self._owner(pod)
                if owner is not None and owner.kind == "Deployment":
                    self._new_pod(owner, ready=False)  # a terminating pod no longer counts
            wait = self.grace if grace is None else min(grace, self.grace)
            if wait <= 0:
                self._gone(namespace, name)
            else:
                self._later(wait, self._gone, namespace, name)
            return pod

    def _gone(self, namespace: str, name: str) -> None:
        with self.lock:
            pod = self.pods.pop((namespace, name), None)
            if pod is None:
                return
            self._emit("DELETED", pod)
            owner = self._owner(pod)
            if owner is not None and owner.kind == "StatefulSet":  # the same name comes back
                self._later(0.0, lambda: self._recreate(owner, name))

    def _recreate(self, owner: Workload, name: str) -> None:
        with self.lock:
            self._new_pod(owner, ready=False, index=int(name.rsplit("-", 1)[1]))

    def _owner(self, pod: dict[str, Any]) -> Workload | None:
        references = pod["metadata"].get("ownerReferences") or []
        for workload in self.workloads:
            if any(ref["uid"] == workload.uid for ref in references):
                return workload
        return None

    def _touch(self, item: dict[str, Any]) -> None:
        item["metadata"]["resourceVersion"] = str(next(self.revision))

    def _emit(self, kind: str, pod: dict[str, Any]) -> None:
        event = {"type": kind, "object": json.loads(json.dumps(pod))}
        for watcher in list(self.watchers):
            watcher.put(event)

    def _later(self, delay: float, action: Any, *args: Any) -> None:
        timer = threading.Timer(delay, action, args)
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    # --- custom objects ---

    def create_object(
        self, group: str, version: str, plural: str, namespace: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        name = body.get("metadata", {}).get("name", "")
        key = (group, version, plural, namespace, name)
        with self.lock:
            if key in self.objects:
                return 409, status(409, "AlreadyExists", f'{plural}.{group} "{name}" already exists')
            stored = json.loads(json.dumps(body))
            stored["metadata"].update(
                namespace=namespace,
                uid=str(uuid.uuid4()),
                resourceVersion=str(next(self.revision)),
                creationTimestamp=now_text(),
                generation=1,
            )
            self.objects[key] = stored
            return 201, stored

    def delete_object(
        self, group: str, version: str, plural: str, namespace: str, name: str
    ) -> tuple[int, dict[str, Any]]:
        key = (group, version, plural, namespace, name)
        with self.lock:
            stored = self.objects.get(key)
            if stored is None:
                return 404, status(404, "NotFound", f'{plural}.{group} "{name}" not found')
            if stored["metadata"].get("finalizers"):  # stuck terminating until someone removes them
                stored["metadata"].setdefault("deletionTimestamp", now_text())
                return 200, stored
            del self.objects[key]
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Success",
                "details": {"name": name, "uid": stored["metadata"]["uid"]},
            }

    def recreate_object(self, plural: str, name: str) -> None:
        """Someone deleted the object and made another with the same name (a new uid)."""
        with self.lock:
            key = next(k for k in self.objects if k[2] == plural and k[4] == name)
            self.objects[key]["metadata"]["uid"] = str(uuid.uuid4())


class Handler(BaseHTTPRequestHandler):
    cluster: Cluster
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        cluster = self.cluster
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        with cluster.lock:
            cluster.requests.append((method, parts.path))
        if cluster.down:
            return self._send(503, status(503, "ServiceUnavailable", "the API server is going away"))
        if cluster.token is not None and self.headers.get("Authorization") != f"Bearer {cluster.token}":
            return self._send(401, status(401, "Unauthorized", "Unauthorized"))
        segments = [s for s in parts.path.split("/") if s]
        with contextlib.suppress(BrokenPipeError):
            self._route(method, segments, query, body)

    def _forbidden(self, verb: str, group: str, resource: str, namespace: str) -> bool:
        if (verb, group, resource) in self.cluster.denied:
            message = (
                f'{resource} is forbidden: User "gameday" cannot {verb} resource "{resource}" '
                f'in API group "{group}" in the namespace "{namespace}"'
            )
            self._send(403, status(403, "Forbidden", message))
            return True
        return False

    def _route(self, method: str, s: list[str], query: dict[str, str], body: dict[str, Any]) -> None:
        cluster = self.cluster
        if s == ["apis"]:
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, v in (
                    (g, "v1alpha1" if g == CHAOS_MESH_GROUP else "v1") for g in sorted(cluster.groups)
                )
            ]
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if s == ["version"]:
            return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-double"})
        if s == ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] and method == "POST":
            attributes = body.get("spec", {}).get("resourceAttributes", {})
            key = (attributes.get("verb"), attributes.get("group", ""), attributes.get("resource"))
            allowed = key not in cluster.denied
            return self._send(
                201, {**body, "status": {"allowed": allowed, "reason": "" if allowed else "RBAC: denied"}}
            )
        if s[:2] == ["api", "v1"] and s[2:] == ["pods"]:  # every namespace
            if self._forbidden("list", "", "pods", ""):
                return None
            with cluster.lock:
                items = [
                    p
                    for p in cluster.pods.values()
                    if matches(p["metadata"]["labels"], query.get("labelSelector", ""))
                ]
            return self._send(200, self._list("PodList", items))
        if s[:3] == ["api", "v1", "namespaces"] and len(s) == 4:
            if s[3] not in cluster.namespaces:
                return self._send(404, status(404, "NotFound", f'namespaces "{s[3]}" not found'))
            return self._send(
                200,
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": s[3]},
                    "status": {"phase": "Active"},
                },
            )
        if s[:3] == ["api", "v1", "namespaces"] and len(s) >= 5 and s[4] == "pods":
            return self._pods(method, s[3], s[5] if len(s) > 5 else None, query, body)
        if s[:3] == ["apis", "apps", "v1"] and len(s) == 7 and s[5] in ("deployments", "statefulsets"):
            return self._workload(s[3 + 1], s[5], s[6])
        if len(s) >= 6 and s[0] == "apis" and s[3] == "namespaces":
            group, version, namespace, plural = s[1], s[2], s[4], s[5]
            return self._custom(
                method, group, version, namespace, plural, s[6] if len(s) > 6 else None, query, body
            )
        if len(s) == 4 and s[0] == "apis" and s[1] in cluster.groups:  # every namespace
            group, version, plural = s[1], s[2], s[3]
            if self._forbidden("list", group, plural, ""):
                return None
            with cluster.lock:
                items = [
                    o
                    for (g, v, p, _, _), o in cluster.objects.items()
                    if (g, v, p) == (group, version, plural)
                    and matches(o["metadata"].get("labels", {}), query.get("labelSelector", ""))
                ]
            return self._send(200, self._list(f"{plural}List", items))
        return self._send(
            404, status(404, "NotFound", f"the server could not find the requested resource {'/'.join(s)}")
        )

    def _pods(
        self, method: str, namespace: str, name: str | None, query: dict[str, str], body: dict[str, Any]
    ) -> None:
        cluster = self.cluster
        if namespace not in cluster.namespaces:
            return self._send(404, status(404, "NotFound", f'namespaces "{namespace}" not found'))
        if name is None and query.get("watch") in ("true", "True", "1"):
            if self._forbidden("watch", "", "pods", namespace):
                return None
            return self._watch(
                namespace, query.get("labelSelector", ""), float(query.get("timeoutSeconds", "30"))
            )
        if name is None:
            if self._forbidden("list", "", "pods", namespace):
                return None
            return self._send(
                200, self._list("PodList", cluster.live_pods(namespace, query.get("labelSelector", "")))
            )
        if method == "DELETE":
            if self._forbidden("delete", "", "pods", namespace):
                return None
            grace = body.get("gracePeriodSeconds")
            pod = cluster.delete_pod(namespace, name, None if grace is None else float(grace))
            if pod is None:
                return self._send(404, status(404, "NotFound", f'pods "{name}" not found'))
            return self._send(200, pod)
        with cluster.lock:
            pod = cluster.pods.get((namespace, name))
        if pod is None:
            return self._send(404, status(404, "NotFound", f'pods "{name}" not found'))
        return self._send(200, pod)

    def _workload(self, namespace: str, plural: str, name: str) -> None:
        kind = "Deployment" if plural == "deployments" else "StatefulSet"
        if self._forbidden("get", "apps", plural, namespace):
            return None
        for workload in self.cluster.workloads:
            if (workload.kind, workload.namespace, workload.name) == (kind, namespace, name):
                template = {
                    "metadata": {"labels": workload.labels},
                    "spec": {"containers": [{"name": "app", "image": "gameday-demo"}]},
                }
                spec = {
                    "replicas": workload.replicas,
                    "selector": {"matchLabels": workload.labels},
                    "template": template,
                }
                if kind == "StatefulSet":
                    spec["serviceName"] = name
                document = {
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "metadata": {"name": name, "namespace": namespace, "uid": workload.uid},
                    "spec": spec,
                }
                return self._send(200, document)
        return self._send(404, status(404, "NotFound", f'{plural}.apps "{name}" not found'))

    def _custom(
        self,
        method: str,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str | None,
        query: dict[str, str],
        body: dict[str, Any],
    ) -> None:
        cluster = self.cluster
        if group not in cluster.groups:
            return self._send(
                404,
                status(
                    404, "NotFound", f"the server could not find the requested resource ({plural}.{group})"
                ),
            )
        verb = {"POST": "create", "DELETE": "delete"}.get(method, "get" if name else "list")
        if self._forbidden(verb, group, plural, namespace):
            return None
        if method == "POST":
            code, document = cluster.create_object(group, version, plural, namespace, body)
            return self._send(code, document)
        if method == "DELETE" and name:
            code, document = cluster.delete_object(group, version, plural, namespace, name)
            return self._send(code, document)
        with cluster.lock:
            if name:
                stored = cluster.objects.get((group, version, plural, namespace, name))
                if stored is None:
                    return self._send(404, status(404, "NotFound", f'{plural}.{group} "{name}" not found'))
                return self._send(200, stored)
            items = [
                o
                for (g, v, p, ns, _), o in cluster.objects.items()
                if (g, v, p, ns) == (group, version, plural, namespace)
                and matches(o["metadata"].get("labels", {}), query.get("labelSelector", ""))
            ]
        return self._send(200, self._list(f"{plural}List", items))

    def _watch(self, namespace: str, selector: str, timeout: float) -> None:
        """Every pod that matches, as ADDED, then changes as they happen, until the timeout."""
        cluster = self.cluster
        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        with cluster.lock:
            for pod in cluster.live_pods(namespace, selector):
                events.put({"type": "ADDED", "object": json.loads(json.dumps(pod))})
            cluster.watchers.append(events)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0 and not cluster.down:
                try:
                    event = events.get(timeout=min(left, 0.2))
                except queue.Empty:
                    continue
                if event is None:
                    break
                pod = event["object"]
                if pod["metadata"]["namespace"] != namespace or not matches(
                    pod["metadata"]["labels"], selector
                ):
                    continue
                line = (json.dumps(event) + "\n").encode()
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with cluster.lock:
                cluster.watchers.remove(events)
        self.close_connection = True

    @staticmethod
    def _list(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}

    def _send(self, code: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ApiDouble:
    """A running double: `url` for KUBERNETES_HOST or a kubeconfig's server."""

    def __init__(self, cluster: Cluster | None = None) -> None:
        self.cluster = cluster or Cluster()
        handler = type("BoundHandler", (Handler,), {"cluster": self.cluster})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        for watcher in list(self.cluster.watchers):
            watcher.put(None)
        for timer in self.cluster.timers:
            timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, context: str = "double") -> str:
        """A kubeconfig naming this server, as a YAML text."""
        user = {"token": self.cluster.token} if self.cluster.token else {}
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": context, "cluster": {"server": self.url}}],
                "users": [{"name": "gameday", "user": user}],
                "contexts": [{"name": context, "context": {"cluster": context, "user": "gameday"}}],
                "current-context": context,
            }
        )

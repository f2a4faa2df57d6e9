"""Chaos Mesh objects on the cluster: created and deleted through chaostoolkit-kubernetes'
custom-object actions, read back with the kubernetes client. Shared by the driver (apply and
revert) and by `gameday recover`."""

from __future__ import annotations

from typing import Any

from chaoslib_ext.drivers.kubernetes.chaos_mesh import GROUP, RUN_LABEL, VERSION, ChaosObject
from chaoslib_ext.drivers.kubernetes.cluster import REQUEST_TIMEOUT, Cluster, connect, failure, reason
from chaoslib_ext.drivers.kubernetes.undo import DeleteClusterObject, wait_gone
from chaoslib_ext.errors import RunAborted


class NotCreated(RunAborted):
    """The API server refused the object: nothing was made. (Any other failure may have made it.)"""


def create(cluster: Cluster, chaos: ChaosObject) -> dict[str, Any]:
    """Create it; the API server's copy (with its uid). A name already taken is an error:
    chaosk8s would hand back the 409's Status as if it were the object."""
    from chaosk8s.crd.actions import create_custom_object
    from chaoslib.exceptions import ActivityFailed

    namespace = chaos.body["metadata"]["namespace"]
    try:
        made = create_custom_object(
            GROUP, VERSION, chaos.plural, namespace, resource=chaos.body, secrets=cluster.secrets()
        )
    except ActivityFailed as error:
        raise NotCreated(
            f"could not create {chaos.kind} {namespace}/{chaos.name}: {str(error)[:300]}"
        ) from None
    except Exception as error:  # no answer: it may or may not exist now
        raise failure(error, f"creating {chaos.kind} {namespace}/{chaos.name}", cluster.server) from None
    made = dict(made)
    if made.get("kind") == "Status" or made.get("metadata", {}).get("labels", {}).get(RUN_LABEL) is None:
        raise NotCreated(
            f"{chaos.kind} {namespace}/{chaos.name} already exists and is not this run's",
            hint="another run of the same name? gameday names objects by run and fault",
        )
    return made


def read(cluster: Cluster, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as the API server has it, or None (404)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(cluster.api)
    try:
        found: Any = api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise failure(error, f"reading {plural} {namespace}/{name}", cluster.server) from None
    except Exception as error:  # urllib3's connection errors
        raise failure(error, f"reading {plural} {namespace}/{name}", cluster.server) from None
    return dict(found)


class ObjectAway:
    """Takes one object a run made away: only on the server it was made on, only if it is still
    that object (the run's label, and its uid once known), through chaosk8s; then waits for it
    to be gone (finalizers may keep it terminating)."""

    def __init__(self, undo: DeleteClusterObject, cluster: Cluster | None = None) -> None:
        self.undo = undo
        self.cluster = cluster

    def take_away(self, wait: float) -> str | None:
        """None when it is gone (or was never this run's to take); else what keeps it."""
        from chaosk8s.crd.actions import delete_custom_object
        from chaoslib.exceptions import ActivityFailed

        undo = self.undo
        cluster = self.cluster or connect(undo.context or None)
        if cluster.server.rstrip("/") != undo.server.rstrip("/"):
            return (
                f"context {undo.context or '(none)'} now reaches {cluster.server}, not {undo.server} where "
                f"{undo.describe()} was made: left alone"
            )
        if not self._ours(cluster):
            return None  # gone, or somebody else's object now: nothing of this run to undo
        try:
            delete_custom_object(
                undo.group, undo.version, undo.plural, undo.name, undo.namespace, secrets=cluster.secrets()
            )
        except ActivityFailed as error:
            if "Not Found" not in str(error):
                return f"could not delete {undo.describe()}: {str(error)[:300]}"
        if wait_gone(lambda: self._ours(cluster), wait):
            return None
        current = read(cluster, undo.plural, undo.namespace, undo.name) or {}
        finalizers = ", ".join(current.get("metadata", {}).get("finalizers") or []) or "none listed"
        return f"{undo.describe()} is stuck terminating (finalizers: {finalizers})"

    def _ours(self, cluster: Cluster) -> bool:
        undo = self.undo
        current = read(cluster, undo.plural, undo.namespace, undo.name)
        if current is None:
            return False
        metadata = current.get("metadata", {})
        same = not undo.uid or metadata.get("uid") == undo.uid
        return same and str(metadata.get("labels", {}).get(RUN_LABEL)) == undo.run


def list_labelled(cluster: Cluster, plural: str, selector: str) -> list[dict[str, Any]]:
    """Every object of `plural` in every namespace the user may list, carrying `selector`."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(cluster.api)
    try:
        found: Any = api.list_cluster_custom_object(
            GROUP, VERSION, plural, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as error:
        if error.status == 404:
            return []  # no Chaos Mesh here
        raise RunAborted(f"could not list {plural}: {reason(error)}") from None
    return list(found.get("items", []))

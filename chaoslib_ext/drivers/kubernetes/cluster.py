"""The cluster as the kubernetes driver reaches it: a client made exactly as chaostoolkit-kubernetes
makes one (KUBECONFIG and its context, in-cluster, KUBERNETES_HOST and a token), the server it
points at, and API errors in one line each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

from chaoslib_ext.errors import RunAborted, SpecError

REQUEST_TIMEOUT = (5, 20)  # seconds to connect, to read: an API call never hangs a run


@dataclass(frozen=True)
class Cluster:
    """A connection: the client, the server URL it talks to, and the kubeconfig context (if any)."""

    api: Any  # kubernetes.client.ApiClient
    server: str
    context: str

    def secrets(self) -> dict[str, str]:
        """What chaostoolkit-kubernetes' actions are given so that they reach this same cluster."""
        return {"KUBERNETES_CONTEXT": self.context} if self.context else {}


def connect(context: str | None = None) -> Cluster:
    """A client for `context` (or the current one), the way chaosk8s.create_k8s_api_client makes it."""
    import chaosk8s
    from kubernetes.config import ConfigException, kube_config

    config_path = chaosk8s.get_config_path()
    in_pod = os.environ.get("CHAOSTOOLKIT_IN_POD") == "true"
    if not chaosk8s.has_local_config_file(config_path) and not in_pod and "KUBERNETES_HOST" not in os.environ:
        raise SpecError(
            f"no Kubernetes configuration: {config_path} does not exist",
            hint="set KUBECONFIG (or ~/.kube/config), CHAOSTOOLKIT_IN_POD=true in a pod, or KUBERNETES_HOST",
        )
    # The kubernetes package reads KUBECONFIG when it is imported, not when a client is made: a
    # KUBECONFIG set later would be ignored ("Invalid kube-config file").
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = config_path
    secrets = {"KUBERNETES_CONTEXT": context} if context else {}
    try:
        api = chaosk8s.create_k8s_api_client(secrets)
    except (ConfigException, OSError, ValueError) as error:
        raise SpecError(
            f"the Kubernetes configuration cannot be used: {str(error).splitlines()[0][:200]}",
            where=config_path,
            hint="check target.context against `kubectl config get-contexts`",
        ) from None
    current = context or ""
    if not current and chaosk8s.has_local_config_file(config_path):
        try:
            contexts: Any = cast(Any, kube_config.list_kube_config_contexts)(config_file=config_path)
            active = contexts[1]
            current = str(active["name"])
        except (ConfigException, KeyError, TypeError):
            current = ""
    return Cluster(api, str(api.configuration.host), current)


def failure(error: Exception, doing: str, server: str) -> RunAborted:
    """One line for what went wrong talking to the API server."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(error, ApiException):
        if error.status == 401:
            return RunAborted(
                f"the API server at {server} refused the credentials while {doing} (401)",
                hint="an expired token? refresh it (kubectl get pods shows the same)",
            )
        if error.status == 403:
            return RunAborted(
                f"forbidden while {doing}: {reason(error)}", hint="see the README for the RBAC it needs"
            )
        return RunAborted(f"the API server answered {error.status} while {doing}: {reason(error)}")
    return RunAborted(
        f"cannot reach the Kubernetes API server at {server} while {doing}: {type(error).__name__}",
        hint="is the cluster up, and the right context chosen (target.context)?",
    )


def reason(error: Any) -> str:
    """The message of an ApiException's Status body, else its reason."""
    import json

    try:
        return str(json.loads(error.body).get("message") or error.reason)[:300]
    except (TypeError, ValueError, AttributeError):
        return str(getattr(error, "reason", error))[:300]

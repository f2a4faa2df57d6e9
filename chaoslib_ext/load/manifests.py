"""`gameday k8s-workers`: Kubernetes objects that run an experiment's load.workers as pods.

A ConfigMap holds the locustfile (the workers must run the master's own: the handshake refuses
another); a Job runs `expect` pods of `gameday worker`, each joining the master; each exits when
the master tells it to quit, and the Job's deadline stops them if the master never comes. With
`master` not given, the master is gameday running in the cluster, behind the Service rendered here
(pods labelled app.kubernetes.io/component: gameday-master).
"""

from __future__ import annotations

from typing import Any

from chaoslib_ext.errors import SpecError
from chaoslib_ext.spec.model import Experiment

NAME = "gameday-workers"
MASTER_SERVICE = "gameday-master"
LOCUST_DIR = "/locust"
DEADLINE_MARGIN_SECONDS = 300  # beyond joining and the experiment's phases: start-up, stop, slack
LABELS = {"app.kubernetes.io/name": "gameday", "app.kubernetes.io/component": "locust-worker"}
MASTER_LABELS = {"app.kubernetes.io/name": "gameday", "app.kubernetes.io/component": "gameday-master"}


def worker_manifests(
    experiment: Experiment, image: str, namespace: str, master: str | None = None
) -> list[dict[str, Any]]:
    """The ConfigMap, the Job and (with the master in the cluster) its Service."""
    workers = experiment.load.workers
    if workers is None:
        raise SpecError(
            "the experiment has no load.workers: its load runs in gameday's own processes",
            where=str(experiment.path),
            hint="add load.workers: {expect: N, bind: 0.0.0.0:5557} to run the load from worker pods",
        )
    locustfile = experiment.load.locustfile
    address = master or f"{MASTER_SERVICE}.{namespace}.svc:{workers.bind_port}"
    metadata = {"namespace": namespace, "labels": dict(LABELS)}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, **metadata},
        "data": {locustfile.name: locustfile.read_text(encoding="utf-8")},
    }
    deadline = round(workers.join_timeout + experiment.phases.total + DEADLINE_MARGIN_SECONDS)
    container = {
        "name": "worker",
        "image": image,
        "command": ["gameday", "worker", "--master", address, "-f", f"{LOCUST_DIR}/{locustfile.name}"],
        "volumeMounts": [{"name": "locustfile", "mountPath": LOCUST_DIR, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": NAME, **metadata},
        "spec": {
            "parallelism": workers.expect,
            "completions": workers.expect,
            # a failed pod (refused, evicted) must not fail the Job, which would stop the others mid-run
            "backoffLimit": workers.expect,
            "activeDeadlineSeconds": deadline,  # a master that never comes does not keep them forever
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [{"name": "locustfile", "configMap": {"name": NAME}}],
                },
            },
        },
    }
    objects = [config_map, job]
    if master is None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": MASTER_SERVICE, "namespace": namespace, "labels": dict(MASTER_LABELS)},
                "spec": {
                    "selector": dict(MASTER_LABELS),
                    "ports": [{"name": "locust", "port": workers.bind_port, "targetPort": workers.bind_port}],
                },
            }
        )
    return objects

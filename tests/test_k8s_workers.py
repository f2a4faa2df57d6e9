"""`gameday k8s-workers`: the objects that run load.workers as pods. No cluster runs here: they are
checked against the Kubernetes API models of the `kubernetes` package (every field known, typed
and required ones present: nothing is dropped when a model is read back), and their command
against gameday's own parser and handshake."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import REPO, assert_kubernetes_object, gameday

from chaoslib_ext.cli import build_parser
from chaoslib_ext.load.handshake import Identity

DEMO = REPO / "experiments" / "demo-workers.yaml"
MODELS = {"ConfigMap": "V1ConfigMap", "Job": "V1Job", "Service": "V1Service"}


def rendered(*extra: str) -> dict[str, dict]:
    result = gameday(
        "k8s-workers", str(DEMO), "--image", "registry.example/gameday:0.1.0", *extra, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result
    return {document["kind"]: document for document in yaml.safe_load_all(result.stdout)}


def test_the_objects_are_valid_kubernetes_objects_with_nothing_unknown():
    objects = rendered("--namespace", "chaos", "--var", "master_port=6000")
    assert set(objects) == {"ConfigMap", "Job", "Service"}
    for kind, document in objects.items():
        assert_kubernetes_object(document, MODELS[kind])
        assert document["metadata"]["namespace"] == "chaos"
    job = objects["Job"]["spec"]
    assert job["parallelism"] == job["completions"] == 2  # the experiment's load.workers.expect
    assert job["template"]["spec"]["restartPolicy"] == "Never" and job["activeDeadlineSeconds"] > 60
    assert job["backoffLimit"] == 2  # one failed pod does not fail the Job (which would stop the others)
    service = objects["Service"]["spec"]
    assert service["ports"][0]["port"] == 6000
    pod_labels = job["template"]["metadata"]["labels"]
    assert not set(service["selector"].items()) <= set(pod_labels.items())  # the master, not the workers


def test_the_workers_run_gameday_worker_on_the_masters_own_locustfile(tmp_path: Path):
    objects = rendered("--namespace", "chaos")
    [container] = objects["Job"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    arguments = build_parser().parse_args(command[1:])
    assert command[0] == "gameday" and arguments.command == "worker"
    assert arguments.master == "gameday-master.chaos.svc:5557"
    [(name, text)] = objects["ConfigMap"]["data"].items()
    assert str(arguments.locustfile) == f"{container['volumeMounts'][0]['mountPath']}/{name}"
    copy = tmp_path / name
    copy.write_text(text)
    master_file = REPO / "loadtests" / "checkout.py"
    assert Identity.of(str(copy)).digest == Identity.of(str(master_file)).digest  # the handshake accepts it


def test_a_master_outside_the_cluster_gets_no_service():
    objects = rendered("--master", "10.0.0.5:5557")
    assert set(objects) == {"ConfigMap", "Job"}
    assert "10.0.0.5:5557" in objects["Job"]["spec"]["template"]["spec"]["containers"][0]["command"]


def test_an_experiment_without_workers_is_refused_in_one_line():
    result = gameday(
        "k8s-workers", str(REPO / "experiments" / "demo-latency.yaml"), "--image", "x", timeout=60
    )
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "the experiment has no load.workers" in line and "(hint: add load.workers" in line, line

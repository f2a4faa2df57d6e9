"""The kubernetes driver against a stateful Kubernetes API double over real HTTP (no control plane
can run here), driven by the real `kubernetes` client and the real chaostoolkit-kubernetes
functions. What is checked is the cluster's state as the API serves it: which pods were deleted
and with what grace, which Chaos Mesh objects exist with what body, what the ledger holds."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, gameday, start_run, wait_for_line
from docker_support import wait_until
from kubernetes_double import ApiDouble, Cluster

from chaoslib_ext import app
from chaoslib_ext.drivers.base import RunContext
from chaoslib_ext.drivers.kubernetes.driver import KubernetesDriver
from chaoslib_ext.errors import GamedayError, RunAborted
from chaoslib_ext.events import Timeline
from chaoslib_ext.faults.base import choose
from chaoslib_ext.faults.injection import Injection
from chaoslib_ext.spec import load_experiment
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.trust import RunDirectory
from chaoslib_ext.state.undo import parse

EXPERIMENT = """\
version: 1
title: kubernetes
target: {{driver: kubernetes, namespace: shop, allow: {{namespaces: [shop]}}}}
load: {{locustfile: {locustfile}, host: "{host}", users: 2}}
slo: {{availability: 50%}}
phases: {{warmup: 1s, baseline: 2s, fault: {fault}, recovery: 2s}}
faults:
  - {kind}: {spec}
"""


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    """shop: Deployment web (3 pods, app=web) and two lone pods, x-1 and x-10 (app=x); Chaos Mesh."""
    state = Cluster()
    state.add_workload("Deployment", "shop", "web", {"app": "web"}, 3)
    state.add_pod("shop", "x-1", {"app": "x"})
    state.add_pod("shop", "x-10", {"app": "x"})
    state.install_chaos_mesh()
    double = ApiDouble(state)
    monkeypatch.setenv("KUBERNETES_HOST", double.url)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    yield state
    double.close()


def experiment(
    tmp_path: Path, kind: str, spec: str, fault: str = "4s", host: str = "http://127.0.0.1:9"
) -> Path:
    path = tmp_path / f"{kind}.yaml"
    locustfile = REPO / "loadtests" / "backend.py"  # GET /work, what the demo backend answers
    path.write_text(EXPERIMENT.format(locustfile=locustfile, host=host, fault=fault, kind=kind, spec=spec))
    return path


def started(tmp_path: Path, path: Path) -> tuple[KubernetesDriver, Ledger, Timeline]:
    prepared = app.prepare(load_experiment(path))
    driver = prepared.driver
    assert isinstance(driver, KubernetesDriver)
    ledger = Ledger.create(f"k8s-{path.stem}-{os.urandom(3).hex()}", tmp_path / "state")
    timeline = Timeline()
    driver.start(RunContext(RunDirectory.create(tmp_path / "reports", ledger.run_id), timeline, ledger))
    return driver, ledger, timeline


def test_plan_lists_the_running_pods_and_refuses_a_selector_outside_the_allowlist(cluster, tmp_path):
    path = experiment(tmp_path, "pod-kill", "{selector: {deployment: web}, count: 1, seed: 4}")
    plan = gameday("plan", str(path))
    assert plan.returncode == 0, plan.stderr
    pods = [p["metadata"]["name"] for p in cluster.live_pods("shop", "app=web")]
    assert f"candidates: {', '.join(pods)}" in plan.stdout
    assert "SIGKILL 1 of 3 running pod(s), pods of deployment shop/web" in plan.stdout
    labelled = path.read_text().replace("allow: {namespaces: [shop]}", "allow: {labels: {tier: front}}")
    path.write_text(labelled)
    outside = gameday("plan", str(path))
    assert outside.returncode == 2 and "is outside target.allow" in outside.stderr
    other = path.read_text().replace("allow: {labels: {tier: front}}", "allow: {namespaces: [other]}")
    path.write_text(other)
    refused = gameday("validate", str(path))
    assert refused.returncode == 2 and "namespace shop is outside target.allow.namespaces" in refused.stderr
    assert not [r for r in cluster.requests if r[0] != "GET" and "selfsubjectaccessreviews" not in r[1]]


def test_a_missing_permission_is_named_before_anything_changes(cluster, tmp_path):
    cluster.denied.add(("delete", "", "pods"))
    path = experiment(tmp_path, "pod-kill", "{selector: {labels: {app: web}}}")
    for command in ("plan", "run"):
        result = (
            gameday(command, str(path), "--report-dir", str(tmp_path))
            if command == "run"
            else gameday(command, str(path))
        )
        assert result.returncode == 2, result.stderr
        assert "this user cannot delete pods in namespace shop" in result.stderr
        assert "Traceback" not in result.stderr
    assert cluster.deletes == [] and len(cluster.live_pods("shop", "app=web")) == 3


def test_pod_kill_deletes_exactly_the_chosen_pod_and_the_timeline_sees_its_replacement_get_ready(
    cluster, tmp_path
):
    # the lone pods x-1 and x-10: a name pattern that is not anchored would take both
    seed = next(s for s in range(100) if choose(random.Random(s), ["x-1", "x-10"], 1, name=str) == ["x-1"])
    lone = experiment(tmp_path, "pod-kill", f"{{selector: {{labels: {{app: x}}}}, count: 1, seed: {seed}}}")
    driver, ledger, _ = started(tmp_path, lone)
    [record] = Injection(0, load_experiment(lone).faults[0], seed).apply(driver)
    assert record.target == "x-1" and record.detail["grace"] == "0s"
    wait_until(lambda: [p["metadata"]["name"] for p in cluster.live_pods("shop", "app=x")] == ["x-10"])
    assert cluster.deletes == [("x-1", 0.0)]
    driver.stop()

    web = experiment(tmp_path, "pod-kill", "{selector: {deployment: web}, signal: SIGTERM, seed: 1}")
    driver, ledger, timeline = started(tmp_path, web)
    before = {p["metadata"]["name"] for p in cluster.live_pods("shop", "app=web")}
    [record] = Injection(0, load_experiment(web).faults[0], 1).apply(driver)
    assert record.target in before and cluster.deletes[-1] == (record.target, None)  # the pod's own grace

    def seen(action: str) -> list[str]:
        return [e.subject for e in timeline.events() if e.source == "service" and e.action == action]

    wait_until(lambda: record.target in seen("deleted") and seen("ready"))
    [replacement] = seen("created")
    assert replacement not in before and seen("ready") == [replacement]
    assert seen("terminating") == [record.target]
    driver.stop()
    assert ledger.pending == {}


def test_a_network_fault_is_a_networkchaos_on_exactly_the_chosen_pods_deleted_on_revert(cluster, tmp_path):
    path = experiment(
        tmp_path,
        "network-latency",
        "{selector: {deployment: web}, delay: 300ms, jitter: 20ms, count: 2, seed: 5, after: 1s, "
        "duration: 2s}",
    )
    driver, ledger, _ = started(tmp_path, path)
    spec = load_experiment(path).faults[0]
    records = Injection(0, spec, 5).apply(driver)
    [chaos] = cluster.objects_of("networkchaos")
    pods = sorted(p["metadata"]["name"] for p in cluster.live_pods("shop", "app=web"))
    chosen = choose(random.Random(5), pods, 2, name=str)
    assert sorted(r.target for r in records) == chosen
    assert chaos["spec"] == {
        "mode": "all",
        "selector": {"pods": {"shop": chosen}},
        "duration": "62s",  # the fault's 2 s and a 60 s dead-man's switch
        "direction": "to",
        "action": "delay",
        "delay": {"latency": "300ms", "jitter": "20ms", "correlation": "0"},
    }
    metadata = chaos["metadata"]
    assert metadata["labels"] == {"app.kubernetes.io/managed-by": "gameday", "gameday.dev/run": ledger.run_id}
    assert "target" not in chaos["spec"] and metadata["name"].endswith("-fault-1")
    [entry] = ledger.pending.values()
    assert entry["undo"]["uid"] == metadata["uid"] and entry["undo"]["server"] == driver.cluster.server
    Injection(0, spec, 5).revert(driver)
    assert cluster.objects_of("networkchaos") == [] and ledger.pending == {}


def test_a_name_already_taken_is_an_error_not_someone_elses_object_taken_for_ours(cluster, tmp_path):
    path = experiment(
        tmp_path, "network-loss", "{selector: {labels: {app: web}}, probability: 5%, direction: downstream}"
    )
    driver, ledger, _ = started(tmp_path, path)
    name = f"gameday-{hashlib.sha1(ledger.run_id.encode()).hexdigest()[:10]}-fault-1"
    cluster.create_object(
        "chaos-mesh.org", "v1alpha1", "networkchaos", "shop", {"metadata": {"name": name}, "spec": {}}
    )
    with pytest.raises(RunAborted, match="already exists and is not this run's"):
        Injection(0, load_experiment(path).faults[0], 1).apply(driver)
    assert ledger.pending == {} and cluster.objects_of("networkchaos")[0]["spec"] == {}  # theirs, untouched


def test_a_dns_error_is_a_dnschaos_and_what_chaos_mesh_cannot_express_is_refused_with_its_reason(
    cluster, tmp_path
):
    path = experiment(tmp_path, "dns-error", '{selector: {labels: {app: web}}, names: ["db.shop.*"]}')
    driver, ledger, _ = started(tmp_path, path)
    spec = load_experiment(path).faults[0]
    Injection(0, spec, 1).apply(driver)
    [chaos] = cluster.objects_of("dnschaos")
    assert (chaos["spec"]["action"], chaos["spec"]["patterns"]) == ("error", ["db.shop.*"])
    assert len(chaos["spec"]["selector"]["pods"]["shop"]) == 3  # DNS faults hit every pod by default
    Injection(0, spec, 1).revert(driver)
    assert cluster.objects_of("dnschaos") == [] and ledger.pending == {}
    refusals = {
        "dns-delay": ("{selector: {labels: {app: web}}, names: [db], delay: 1s}", "DNSChaos has no delay"),
        "dns-spoof": (
            "{selector: {labels: {app: web}}, names: [db], addresses: [10.0.0.9]}",
            "random addresses",
        ),
        "network-reset": ("{selector: {labels: {app: web}}}", "no connection reset"),
        "network-loss": ("{selector: {labels: {app: web}}, probability: 10%}", "write direction: downstream"),
        "network-partition": (
            "{selector: {labels: {app: web}}, direction: downstream}",
            "write mode: blackhole",
        ),
        "pod-kill": ("{selector: {labels: {app: web}}, signal: SIGHUP}", "SIGTERM (its grace period)"),
        "container-pause": ("{selector: {labels: {app: web}}}", "use pod-kill"),
    }
    for kind, (spec_text, reason) in refusals.items():
        refused = gameday("validate", str(experiment(tmp_path, kind, spec_text)))
        assert refused.returncode == 2 and reason in refused.stderr, (kind, refused.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_fault_deletes_the_chaos_object(cluster, tmp_path, start, sig):
    _, port = start("chaoslib_ext.demo.backend")
    path = experiment(
        tmp_path,
        "network-loss",
        "{selector: {labels: {app: web}}, probability: 20%, direction: downstream}",
        fault="30s",
        host=f"http://127.0.0.1:{port}",
    )
    process, lines = start_run(path, tmp_path / "reports")
    try:
        wait_for_line(lines, "network-loss: inject", timeout=60)
        assert len(cluster.objects_of("networkchaos")) == 1
        process.send_signal(sig)
        assert process.wait(timeout=60) == 3
    finally:
        if process.poll() is None:
            process.kill()
    assert cluster.objects_of("networkchaos") == []


@pytest.mark.slow
def test_after_sigkill_recover_deletes_the_object_but_leaves_one_recreated_under_the_same_name(
    cluster, tmp_path, start
):
    _, port = start("chaoslib_ext.demo.backend")
    spec = "{selector: {labels: {app: web}}, probability: 20%, direction: downstream}"
    for recreated in (False, True):
        path = experiment(tmp_path, "network-loss", spec, fault="30s", host=f"http://127.0.0.1:{port}")
        process, lines = start_run(path, tmp_path / "reports")
        wait_for_line(lines, "network-loss: inject", timeout=60)
        process.kill()
        process.wait(timeout=10)
        [chaos] = cluster.objects_of("networkchaos")
        if recreated:  # somebody else's object now: recover must not touch it
            cluster.recreate_object("networkchaos", chaos["metadata"]["name"])
        recovered = gameday("recover")
        assert recovered.returncode == 0, recovered.stderr
        assert f": NetworkChaos shop/{chaos['metadata']['name']}\n" in recovered.stdout
        assert len(cluster.objects_of("networkchaos")) == (1 if recreated else 0)
        for leftover in cluster.objects_of("networkchaos"):
            cluster.delete_object(
                "chaos-mesh.org", "v1alpha1", "networkchaos", "shop", leftover["metadata"]["name"]
            )


def test_recover_kubernetes_finds_a_dead_runs_objects_by_label_from_another_machine(cluster, tmp_path):
    def made_by_gameday(name: str, expires: float) -> None:
        cluster.create_object(
            "chaos-mesh.org",
            "v1alpha1",
            "networkchaos",
            "shop",
            {
                "metadata": {
                    "name": name,
                    "labels": {"app.kubernetes.io/managed-by": "gameday", "gameday.dev/run": "elsewhere"},
                    "annotations": {"gameday.dev/expires": str(int(expires))},
                },
                "spec": {},
            },
        )

    made_by_gameday("gameday-over", time.time() - 5)
    made_by_gameday("gameday-still-running", time.time() + 300)
    cluster.create_object(
        "chaos-mesh.org", "v1alpha1", "networkchaos", "shop", {"metadata": {"name": "theirs"}, "spec": {}}
    )
    recovered = gameday("recover", "--kubernetes")
    assert recovered.returncode == 0, recovered.stderr
    assert "undone: networkchaos shop/gameday-over (run elsewhere)" in recovered.stdout
    assert sorted(o["metadata"]["name"] for o in cluster.objects_of("networkchaos")) == [
        "gameday-still-running",
        "theirs",
    ]


def test_a_stuck_object_or_an_api_server_gone_mid_fault_stays_in_the_ledger_for_recover(cluster, tmp_path):
    path = experiment(
        tmp_path,
        "network-partition",
        "{selector: {labels: {app: web}}, mode: blackhole, direction: downstream}",
    )
    driver, ledger, _ = started(tmp_path, path)
    spec = load_experiment(path).faults[0]
    Injection(0, spec, 1).apply(driver)
    [chaos] = cluster.objects_of("networkchaos")
    chaos["metadata"]["finalizers"] = ["chaos-mesh/records"]
    with pytest.raises(RunAborted, match=r"stuck terminating \(finalizers: chaos-mesh/records\)"):
        Injection(0, spec, 1).revert(driver)
    assert len(ledger.pending) == 1
    chaos["metadata"]["finalizers"] = []
    cluster.down = True  # the API server goes away: the revert tries again, then leaves it to recover
    started_at = time.monotonic()
    with pytest.raises(RunAborted, match="run `gameday recover` once the API server answers"):
        Injection(0, spec, 1).revert(driver)
    assert time.monotonic() - started_at >= 2 and len(ledger.pending) == 1
    cluster.down = False
    [entry] = ledger.pending.values()  # what `gameday recover` reads back and carries out
    assert parse(entry["undo"], ledger.run_id).perform() is None
    assert cluster.objects_of("networkchaos") == []


def test_bad_setups_get_one_line_and_an_exit_code(cluster, tmp_path, monkeypatch):
    path = experiment(tmp_path, "pod-kill", "{selector: {labels: {app: web}}}")

    def plan_error(env: dict[str, str | None], expected_code: int, text: str) -> None:
        for key, value in env.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        result = gameday("plan", str(path))
        assert result.returncode == expected_code and text in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

    url = os.environ["KUBERNETES_HOST"]
    plan_error({"KUBERNETES_HOST": None}, 2, "no Kubernetes configuration")
    plan_error(
        {"KUBERNETES_HOST": "http://127.0.0.1:9"},
        3,
        "cannot reach the Kubernetes API server at http://127.0.0.1:9",
    )
    cluster.token = "fresh-token"
    plan_error({"KUBERNETES_HOST": url, "KUBERNETES_API_KEY": "expired-token"}, 3, "refused the credentials")
    cluster.token = None
    path.write_text(
        path.read_text().replace(
            "namespace: shop, allow: {namespaces: [shop]}",
            "namespace: nowhere, allow: {namespaces: [nowhere]}",
        )
    )
    plan_error({}, 2, "namespace nowhere not found")
    path.write_text(path.read_text().replace("nowhere", "shop").replace("app: web", "app: nothing"))
    plan_error({}, 2, "no Running pod matches pods in shop labelled app=nothing")
    cluster.groups.discard("chaos-mesh.org")
    path.write_text(
        path.read_text().replace(
            "pod-kill: {selector: {labels: {app: nothing}}}",
            "network-loss: {selector: {labels: {app: web}}, probability: 5%, direction: downstream}",
        )
    )
    plan_error({}, 2, "need Chaos Mesh, which this cluster lacks")


def test_a_kubeconfig_named_after_the_kubernetes_package_was_imported_is_the_one_used(
    cluster, tmp_path, monkeypatch
):
    double_url = os.environ["KUBERNETES_HOST"]
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "double", "cluster": {"server": double_url}}],
                "users": [{"name": "gameday", "user": {}}],
                "contexts": [{"name": "double", "context": {"cluster": "double", "user": "gameday"}}],
                "current-context": "double",
            }
        )
    )
    monkeypatch.delenv("KUBERNETES_HOST")
    monkeypatch.delenv("KUBECONFIG")
    code = (
        "import os, sys, kubernetes\n"  # the package reads KUBECONFIG here, before it is set
        f"os.environ['KUBECONFIG'] = {str(config)!r}\n"
        "from chaoslib_ext.drivers.kubernetes.cluster import connect\n"
        "cluster = connect()\n"
        "print(cluster.server, cluster.context)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [double_url, "double"]


def test_a_chaostoolkit_kubernetes_probe_is_a_steady_state_probe(cluster, tmp_path):
    from chaoslib_ext.engine.probes import run_probe
    from chaoslib_ext.spec.model import ActivityProbe

    probe = ActivityProbe(
        {
            "type": "probe",
            "name": "web pods running",
            "provider": {
                "type": "python",
                "module": "chaosk8s.pod.probes",
                "func": "pods_in_phase",
                "arguments": {"label_selector": "app=web", "phase": "Running", "ns": "shop"},
            },
            "tolerance": True,
        }
    )
    assert run_probe(probe).ok
    cluster.delete_pod("shop", cluster.live_pods("shop", "app=web")[0]["metadata"]["name"], 0)
    wait_until(lambda: any(p["status"]["phase"] == "Pending" for p in cluster.live_pods("shop", "app=web")))
    assert not run_probe(probe).ok  # the replacement is not Running yet


def test_without_a_cluster_plan_refuses_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    path = experiment(tmp_path, "pod-kill", "{selector: {labels: {app: web}}}")
    assert gameday("validate", str(path)).returncode == 0  # the file alone is fine
    with pytest.raises(GamedayError, match="no Kubernetes configuration"):
        app.prepare(load_experiment(path))


def test_the_shipped_kubernetes_examples_plan_against_their_stack(monkeypatch, tmp_path):
    stack = Cluster()
    part_of = {"app.kubernetes.io/part-of": "shop"}
    stack.add_workload("Deployment", "shop", "back", {"app": "back", **part_of}, 3)
    stack.add_workload("Deployment", "shop", "front", {"app": "front", **part_of}, 1)
    stack.install_chaos_mesh()
    double = ApiDouble(stack)
    monkeypatch.setenv("KUBERNETES_HOST", double.url)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    try:
        for name, hits in (
            ("pod-kill-one-back", "SIGKILL 1 of 3 running pod(s), pods of deployment shop/back"),
            (
                "partition-one-back",
                "on the traffic leaving 1 of 3 running pod(s), pods of deployment shop/back",
            ),
            ("dns-error-back", "for the lookups of 1 of 1 running pod(s), pods of deployment shop/front"),
        ):
            plan = gameday("plan", str(REPO / "experiments" / "kubernetes" / f"{name}.yaml"))
            assert plan.returncode == 0 and hits in plan.stdout, (name, plan.stdout, plan.stderr)
        assert stack.objects == {} and stack.deletes == []  # plan changed nothing
    finally:
        double.close()

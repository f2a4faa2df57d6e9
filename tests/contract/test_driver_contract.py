"""The driver contract: every fault kind, applied and reverted through the engine's Injection,
against each driver. A driver keeps it when the victims are the seeded choice that `plan` names,
the effect is seen from outside while the fault holds and gone after its revert, everything it
writes to the ledger is of the undo kinds it declares, and nothing is left pending.

The in-memory fake runs every kind in milliseconds; the local driver runs against real services
(slow), the docker driver against real containers (docker, and root for network and DNS faults).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import LOCUSTFILE, free_port_block
from docker_support import docker_client_or_reason, labelled
from harnesses import EXAMPLES, DockerHarness, FakeHarness, Harness, KubernetesHarness, LocalHarness
from kubernetes_double import ApiDouble, Cluster

from chaoslib_ext.drivers.docker.driver import DockerDriver
from chaoslib_ext.drivers.kubernetes.driver import KubernetesDriver
from chaoslib_ext.drivers.local.driver import LocalDriver
from chaoslib_ext.faults import KINDS
from chaoslib_ext.faults.injection import FaultError, Injection
from chaoslib_ext.netfault.kernel import netem_available
from chaoslib_ext.plan.make import FaultPlan

ALL_KINDS = sorted({kind.kind for kind in KINDS.values()})


def test_every_registered_kind_is_in_the_contract():
    assert set(EXAMPLES) == set(ALL_KINDS)


def keeps_the_contract(harness: Harness, kind: str) -> None:
    spec = harness.fault(kind)
    driver, ledger = harness.driver, harness.ledger
    injection = Injection(0, spec, spec.seed if spec.seed is not None else 7)
    candidates = driver.candidates(spec)
    pending_before = dict(ledger.pending)

    records = injection.apply(driver)
    harness.remember(records)
    victims = {record.target for record in records}
    if spec.selection is not None:
        size = spec.selection.size(len(candidates), spec.params.every_by_default)
        planned = FaultPlan(0, spec, injection.seed, candidates, size, "").first_victims
        assert victims == set(planned), "the victims are not the seeded choice plan names"
    assert victims and harness.affected(kind, victims), f"{kind}: no effect seen from outside"
    written = [entry["undo"]["kind"] for key, entry in ledger.pending.items() if key not in pending_before]
    assert set(written) <= driver.undo_kinds, f"{kind} wrote undo kinds the driver does not declare"

    reverted = injection.revert(driver)
    if spec.params.lasting:
        assert reverted, f"{kind}: a lasting fault's revert says nothing"
        assert not harness.affected(kind, victims), f"{kind}: still in effect after its revert"
    else:
        assert reverted == []
    assert set(ledger.pending) <= set(pending_before), f"{kind} left ledger entries open"


@pytest.fixture
def fake(tmp_path: Path):
    harness = FakeHarness(tmp_path)
    yield harness
    harness.close()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_the_fake_driver_keeps_the_contract(fake: FakeHarness, kind: str):
    keeps_the_contract(fake, kind)


@pytest.mark.parametrize("kind", [k for k in ALL_KINDS if KINDS[k].lasting and KINDS[k].scope != "names"])
def test_a_lasting_fault_that_fails_half_way_is_reported_and_reverted_as_far_as_it_went(fake, kind):
    spec = fake.fault(kind, count=2)
    injection = Injection(0, spec, 7)
    first, second = FaultPlan(0, spec, 7, fake.driver.candidates(spec), 2, "").first_victims
    fake.fake.fail_on = second
    with pytest.raises(FaultError, match="refused the change") as failed:
        injection.apply(fake.driver)
    assert [record.target for record in failed.value.records] == [first]  # what it did before failing
    assert fake.affected(kind, {first}) and not fake.affected(kind, {second})
    assert len(fake.ledger.pending) == 1  # recorded before acting: the clean-up knows about it
    injection.revert(fake.driver)
    assert not fake.affected(kind, {first}) and fake.ledger.pending == {}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(LocalDriver.kinds))
def test_the_local_driver_keeps_the_contract(tmp_path: Path, kind: str):
    harness = LocalHarness(tmp_path, kind, free_port_block(3), LOCUSTFILE)
    try:
        keeps_the_contract(harness, kind)
    finally:
        harness.close()


@pytest.fixture
def api_double(monkeypatch, tmp_path):
    cluster = Cluster()
    cluster.add_workload("Deployment", "shop", "web", {"app": "web"}, 3)
    cluster.install_chaos_mesh()
    double = ApiDouble(cluster)
    monkeypatch.setenv("KUBERNETES_HOST", double.url)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    yield cluster
    double.close()


@pytest.mark.parametrize("kind", sorted(KubernetesDriver.kinds))
def test_the_kubernetes_driver_keeps_the_contract_on_the_api_double(tmp_path: Path, api_double, kind: str):
    harness = KubernetesHarness(tmp_path, kind, api_double, LOCUSTFILE)
    try:
        keeps_the_contract(harness, kind)
    finally:
        harness.close()


CLIENT, NO_DOCKER = docker_client_or_reason()


@pytest.fixture
def label():
    if CLIENT is None:
        pytest.skip(NO_DOCKER)
    yield from labelled(CLIENT)


def docker_kinds() -> list:
    """Process faults need the engine; network and DNS faults also root (and latency sch_netem)."""
    params = []
    for kind in sorted(DockerDriver.kinds):
        marks = [pytest.mark.docker]
        if KINDS[kind].scope != "process":
            marks += [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
        if kind == "network-latency":
            marks.append(pytest.mark.skipif(not netem_available(), reason="this kernel has no sch_netem"))
        params.append(pytest.param(kind, marks=marks))
    return params


@pytest.mark.parametrize("kind", docker_kinds())
def test_the_docker_driver_keeps_the_contract(tmp_path: Path, label: str, kind: str):
    harness = DockerHarness(tmp_path, kind, CLIENT, label, LOCUSTFILE)
    try:
        keeps_the_contract(harness, kind)
    finally:
        harness.close()

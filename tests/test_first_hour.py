"""A newcomer's first hour, end to end: one service faulted on the load's own path, DNS through the
normal resolver, what the live output and report.md say, and a service that crashes by itself."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO, free_port_block
from test_end_to_end import port_free, ports_of, run_experiment

pytestmark = pytest.mark.slow

SHORT = ["--var", "baseline=3s", "--var", "fault=5s", "--var", "recovery=8s"]


def test_one_service_is_faulted_on_the_loads_own_path(tmp_path):
    port = free_port_block(3)
    result, report = run_experiment(
        REPO / "experiments" / "demo-one-service.yaml", tmp_path, *SHORT, "--var", f"backend_port={port}"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    fault = next(p for p in report["phases"] if p["name"] == "fault")
    assert fault["latency_measured_ms"]["p95"] > 400  # the users on the slow replica
    [front] = [e for e in report["timeline"] if e["action"] == "front"]
    assert front["subject"] == "backend" and front["detail"]["upstreams"] == 3
    [revert] = [a for a in report["faults"][0]["actions"] if a["action"] == "revert"]
    assert revert["detail"]["traffic"] > 0  # the load's own connections went through it
    assert all(port_free(p) for p in ports_of(report))


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a service's own resolv.conf needs root (a mount namespace)")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is needed")
def test_a_program_using_the_normal_resolver_sees_the_dns_fault(tmp_path):
    block = free_port_block(4)
    ports = ["--var", f"frontend_port={block}", "--var", f"backend_port={block + 1}"]
    result, report = run_experiment(
        REPO / "experiments" / "root-dns-system-resolver.yaml", tmp_path, *SHORT, "--var", "fault=8s", *ports
    )
    assert result.returncode == 1, result.stdout + result.stderr
    baseline, fault = (next(p for p in report["phases"] if p["name"] == n) for n in ("baseline", "fault"))
    assert baseline["failures"] == 0 and fault["failures"] > 50  # getaddrinfo got SERVFAIL, and only then
    revert = report["faults"][0]["actions"][-1]
    assert revert["detail"]["SERVFAIL"] > 50  # the frontend's lookups reached the run's DNS server
    with open("/etc/resolv.conf") as host:
        assert "127.53." not in host.read()  # the host's file was never touched


def test_the_live_output_has_each_phases_own_figures_and_the_report_compares_them(tmp_path):
    block = free_port_block(4)
    ports = ["--var", f"frontend_port={block}", "--var", f"backend_port={block + 1}"]
    result, _ = run_experiment(REPO / "experiments" / "demo-latency.yaml", tmp_path, *SHORT, *ports)
    assert result.returncode == 1
    for phase in ("warmup", "baseline", "fault", "recovery"):
        assert f"   {phase} phase over: " in result.stderr + result.stdout
    markdown = next(tmp_path.glob("*/report.md")).read_text()
    assert "with `--var baseline=3s` `--var fault=5s` `--var recovery=8s`" in markdown
    assert "## What the fault changed" in markdown and "| p95 |" in markdown and " times)" in markdown
    assert "## Second by second" in markdown and "sent      " in markdown
    assert "recovery_within` allowance" in markdown  # demo-latency sets one: 5s


CRASHING = """\
version: 1
title: A helper service that crashes by itself every few seconds
variables: {{port: 18101}}
services:
  backend:
    command: ["{{python}}", "-m", "chaoslib_ext.demo.backend", "--port", "{{port}}"]
    port: ${{port}}
  helper:
    command: ["{{python}}", "-c", "import time, sys; time.sleep(2); sys.exit(7)"]
    ready: {{command: ["true"]}}
    restart: {{policy: always, delay: 500ms}}
load: {{locustfile: {locustfile}, host: "http://127.0.0.1:${{port}}", users: 2}}
slo: {{availability: 99%}}
phases: {{warmup: 1s, baseline: 2s, fault: 3s, recovery: 2s}}
"""


def test_a_service_that_crashes_by_itself_is_among_the_reasons(tmp_path):
    experiment = tmp_path / "crashing.yaml"
    experiment.write_text(CRASHING.format(locustfile=REPO / "loadtests" / "backend.py"))
    _, report = run_experiment(experiment, tmp_path / "reports", "--var", f"port={free_port_block(1)}")
    crashes = [r for r in report["reasons"] if r.startswith("service helper-0 exited by itself")]
    assert crashes and "exit code 7" in crashes[0], report["reasons"]
    assert "see logs/helper-0.log" in crashes[0]


def test_the_editable_install_is_a_plain_path_entry_so_make_demo_prints_no_setuptools_banner():
    """setuptools prints its "Editable installation" banner when it installs a meta-path finder;
    with package-dir "" = "." it writes a .pth naming the clone instead (and prints nothing)."""
    site = next(Path(sys.prefix, "lib").glob("python3.*/site-packages"))
    if not list(site.glob("__editable__*gameday*")):
        pytest.skip("gameday is not installed in editable mode in this environment (make install does that)")
    [pth] = site.glob("__editable__.gameday-*.pth")
    assert Path(pth.read_text().strip()).resolve() == REPO.resolve()
    assert not list(site.glob("__editable___gameday*finder.py"))

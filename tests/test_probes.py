"""Steady-state probes against a real HTTP server, and chaostoolkit probes run by chaostoolkit-lib."""

from __future__ import annotations

import sys

import pytest
from conftest import HOST, Starter, free_port

from chaoslib_ext.engine.probes import run_probe
from chaoslib_ext.spec.model import ActivityProbe, HttpProbe


@pytest.fixture
def backend_url(start: Starter) -> str:
    _, port = start("chaoslib_ext.demo.backend", "--work-ms", "150")
    return f"http://{HOST}:{port}"


def test_http_probe_checks_status_body_and_latency(backend_url):
    assert run_probe(HttpProbe(backend_url + "/healthz", body="^ok$")).ok
    wrong_status = run_probe(HttpProbe(backend_url + "/nope"))
    assert not wrong_status.ok and wrong_status.detail == "status 404, expected 200"
    assert run_probe(HttpProbe(backend_url + "/nope", status=404)).ok
    wrong_body = run_probe(HttpProbe(backend_url + "/healthz", body="healthy"))
    assert not wrong_body.ok and "does not match" in wrong_body.detail
    slow = run_probe(HttpProbe(backend_url + "/work", within=0.05))
    assert not slow.ok and "more than 50ms" in slow.detail
    assert run_probe(HttpProbe(backend_url + "/work", within=2.0)).ok


def test_http_probe_against_nothing_fails_without_raising():
    result = run_probe(HttpProbe(f"http://127.0.0.1:{free_port()}/healthz", timeout=1.0))
    assert not result.ok and "request failed" in result.detail


def test_chaostoolkit_python_probe_with_tolerance(tmp_path):
    marker = tmp_path / "marker"
    activity = {
        "type": "probe",
        "name": "marker-exists",
        "tolerance": True,
        "provider": {
            "type": "python",
            "module": "os.path",
            "func": "exists",
            "arguments": {"path": str(marker)},
        },
    }
    missing = run_probe(ActivityProbe(activity))
    assert not missing.ok and "outside tolerance" in missing.detail
    marker.write_text("x")
    assert run_probe(ActivityProbe(activity)).ok


def test_chaostoolkit_process_and_http_probes(backend_url):
    process = {
        "type": "probe",
        "name": "exit-code",
        "tolerance": 0,
        "provider": {"type": "process", "path": sys.executable, "arguments": ["-c", "raise SystemExit(3)"]},
    }
    result = run_probe(ActivityProbe(process))
    assert not result.ok
    process["provider"]["arguments"] = ["-c", "pass"]
    assert run_probe(ActivityProbe(process)).ok
    http = {
        "type": "probe",
        "name": "health",
        "tolerance": 200,
        "provider": {"type": "http", "url": backend_url + "/healthz", "timeout": 2},
    }
    assert run_probe(ActivityProbe(http)).ok


def test_a_probe_that_raises_is_a_failed_probe_not_a_crash():
    activity = {
        "type": "probe",
        "name": "boom",
        "provider": {"type": "python", "module": "json", "func": "loads", "arguments": {"s": "{"}},
    }
    result = run_probe(ActivityProbe(activity))
    assert not result.ok

"""Experiment files: what is accepted, and the one-line errors for what is not."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import LOCUSTFILE, MINIMAL, REPO, gameday

from chaoslib_ext import app
from chaoslib_ext.errors import SpecError
from chaoslib_ext.netfault.kernel import netem_available
from chaoslib_ext.plan.make import make_plan
from chaoslib_ext.spec import SpecErrors, load_experiment
from chaoslib_ext.spec.model import (
    DeadlineGuard,
    ErrorRateGuard,
    LatencyGuard,
    ProbeGuard,
    PrometheusGuard,
    WorkersSpec,
)
from chaoslib_ext.spec.suite import is_suite

MANIFESTS = {"compose.yaml", "stack.yaml", "rbac.yaml"}  # what the examples run against, not experiments
EXPERIMENTS = [
    path
    for folder in ("", "docker", "kubernetes")
    for path in sorted((REPO / "experiments" / folder).glob("*.yaml"))
    if path.name not in MANIFESTS and not is_suite(path)
]


def errors_of(path: Path, overrides: dict | None = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_experiment(path, overrides)
    error = caught.value
    return [str(e) for e in error.errors] if isinstance(error, SpecErrors) else [str(error)]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_experiment_is_valid(path):  # as a file: whatever this host has
    experiment = load_experiment(path)
    assert experiment.title
    assert experiment.load.locustfile.is_file()


def test_minimal_experiment_gets_defaults(experiment_file):
    experiment = load_experiment(experiment_file(MINIMAL))
    assert experiment.driver == "local"
    assert experiment.load.spawn_rate == 1
    assert experiment.phases.warmup == 2.0
    assert experiment.slo.judge == ("baseline", "fault", "recovery")
    assert experiment.report_formats == ("json", "markdown", "junit")


@pytest.mark.parametrize(
    ("change", "where", "expected"),
    [
        (
            ("slo: {availability: 99%}", "slo: {availabilty: 99%}"),
            ":4:7:",
            r"slo\.availabilty: unknown field .*did you mean 'availability'",
        ),
        (
            ("baseline: 1s", 'baseline: "250"'),
            ":5:20:",
            r"phases\.baseline: expected a duration such as 250ms.*a number and a unit, in lower case",
        ),
        (("baseline: 1s", "baseline: 250"), None, None),
        (
            ("availability: 99%", "availability: 99"),
            ":4:21:",
            r"slo\.availability: expected a percentage.*% sign",
        ),
        (("users: 1", "users: 0"), ":3:", r"load\.users: must be at least 1"),
        (("version: 1", "version: 2"), ":1:10:", r"version: expected version: 1"),
        (("title: minimal\n", ""), ":1:1:", r"missing required field 'title'"),
        (
            ("phases:", "faults: [{pod-kil: {selector: {service: x}}}]\nphases:"),
            ":5:11:",
            r"faults\[0\]: unknown name 'pod-kil'.*did you mean 'pod-kill'",
        ),
        (
            ("phases:", "steady_state: [{htp: {url: 'http://127.0.0.1:1/'}}]\nphases:"),
            ":5:17:",
            r"unknown name 'htp'.*did you mean 'http'",
        ),
        (('host: "http://127.0.0.1:9"', "host: 127.0.0.1:9"), ":3:", r"load\.host: expected a URL"),
    ],
)
def test_schema_errors_name_place_field_and_hint(experiment_file, change, where, expected):
    path = experiment_file(MINIMAL.replace(*change))
    if expected is None:
        load_experiment(path)  # a bare number is seconds: accepted
        return
    errors = errors_of(path)
    assert len(errors) >= 1
    assert re.search(expected, errors[0]), errors[0]
    assert errors[0].startswith(str(path) + where), errors[0]
    assert "hint:" in errors[0]
    assert "\n" not in errors[0]


def test_semantic_errors_point_at_the_faulty_value(experiment_file):
    text = MINIMAL.replace(
        "phases:",
        """\
services:
  backend: {command: ["{python}", "-m", "x", "--port", "{port}"], replicas: 2}
faults:
  - pod-kill: {selector: {service: backnd}, count: 1}
  - pod-kill: {selector: {service: backend}, count: 3}
phases:""",
    )
    errors = errors_of(experiment_file(text))
    assert any(
        ":8:36:" in e and "no service named 'backnd'" in e and "declared services: backend" in e
        for e in errors
    ), errors
    assert any("{port} is used but the service declares no port" in e for e in errors), errors
    assert any("count 3 is more than the 2 replica(s)" in e for e in errors), errors


def test_yaml_problems_are_one_line_errors(experiment_file, tmp_path):
    cases = {
        "tabs.yaml": (b"version: 1\n\ttitle: x\n", "indent with spaces"),
        "colon.yaml": (b"version: 1\ntitle: a: b\n", "must be quoted"),
        "dup.yaml": (b"version: 1\nversion: 1\n", "duplicate key 'version'"),
        "latin1.yaml": ("title: caf\u00e9\n".encode("latin-1"), "not UTF-8"),
        "empty.yaml": (b"", "the file is empty"),
        "list.yaml": (b"- 1\n- 2\n", "expected a mapping"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        errors = errors_of(path)
        assert expected in errors[0], (name, errors)


def test_alias_bomb_and_huge_files_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert "alias bomb" in errors_of(bomb)[0]
    huge = tmp_path / "huge.yaml"
    huge.write_text("title: x\n" + "# padding\n" * 200_000)
    assert "more than the 1048576 an experiment may have" in errors_of(huge)[0]


def test_deep_nesting_is_refused_without_a_traceback(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("title: " + "[" * 600 + "]" * 600 + "\n")
    assert "nested deeper than 64 levels" in errors_of(deep)[0]


def test_what_would_only_fail_at_run_time_is_caught_by_validate(experiment_file):
    text = MINIMAL.replace(
        "load: {",
        """\
services:
  app: {command: ["no-such-program-here", "--port", "{port}"], port: 18500}
steady_state:
  - http: {url: "http://127.0.0.1:18500/", body: "(["}
  - activity: {type: probe, name: nap, provider: {type: python, module: time, func: sleep}}
load: {options: ["--processes", "4"], """,
    )
    path = experiment_file(text)
    errors = "\n".join(errors_of(path))
    assert "steady_state[0].http.body: invalid regular expression" in errors
    assert "steady_state[1].activity: invalid chaostoolkit activity" in errors
    assert (
        "load.options[0]: Locust option --processes is not supported here "
        "(hint: write load.processes: N (or auto, one per core) instead)"
    ) in errors
    assert "program not found" not in errors  # PATH is the host's: validate reads the file alone
    runnable = (
        path.read_text()
        .replace('load: {options: ["--processes", "4"], ', "load: {")
        .replace(
            '\nsteady_state:\n  - http: {url: "http://127.0.0.1:18500/", body: "(["}\n'
            "  - activity: {type: probe, name: nap, provider: {type: python, module: time, func: sleep}}",
            "",
        )
    )
    path.write_text(runnable)
    with pytest.raises(SpecErrors) as caught:  # plan and run check the host first
        app.prepare(load_experiment(path))
    assert "services.app.command[0]: program not found: no-such-program-here" in str(caught.value)


@pytest.mark.parametrize("value", ["0", "many", "1.5"])
def test_load_processes_is_a_number_or_auto(experiment_file, value):
    bad = experiment_file(MINIMAL.replace("load: {", f"load: {{processes: {value}, "))
    [error] = errors_of(bad)
    assert "load.processes" in error and "a number of processes such as 2, or auto" in error, error
    for good, processes in (("2", 2), ("auto", "auto")):
        path = experiment_file(MINIMAL.replace("load: {", f"load: {{processes: {good}, "))
        assert load_experiment(path).load.processes == processes


def test_load_workers_elsewhere_are_read_and_their_mistakes_named(experiment_file):
    path = experiment_file(
        MINIMAL.replace(
            "load: {",
            "load: {workers: {expect: 3, bind: '0.0.0.0:6000', join_timeout: 2m, max_clock_offset: 250ms}, "
            "on_worker_loss: continue, ",
        )
    )
    load = load_experiment(path).load
    assert load.workers == WorkersSpec(3, "0.0.0.0", 6000, 120.0, 0.25) and load.on_worker_loss == "continue"
    assert load.process_count() == 3
    default = load_experiment(experiment_file(MINIMAL.replace("load: {", "load: {workers: {expect: 1}, ")))
    assert default.load.workers == WorkersSpec(1) and default.load.on_worker_loss == "abort"
    for given, expected in (
        ("workers: {expect: 2}, processes: 2", "load.processes and load.workers do not go together"),
        ("workers: {expect: 2, bind: 'host:70000'}", "load.workers.bind: port 70000 is out of range"),
        ("workers: {expect: 2, bind: 'nohost'}", "load.workers.bind: expected HOST:PORT where the master"),
        ("workers: {bind: '1.2.3.4:5'}", "missing required field 'expect' (hint: add 'expect:'"),
        ("on_worker_loss: ignore", "load.on_worker_loss: 'ignore' is not one of abort, continue"),
        ("options: ['--expect-workers-max-wait', '5']", "load.workers: {join_timeout: 2m}"),
    ):
        errors = "\n".join(errors_of(experiment_file(MINIMAL.replace("load: {", f"load: {{{given}, "))))
        assert expected in errors, (given, errors)


def test_network_and_dns_faults_need_their_wiring(experiment_file):
    text = MINIMAL.replace(
        "load: {",
        """\
services:
  backend: {command: ["{python}", "-m", "x", "--port", "{port}"], port: 18500}
faults:
  - network-loss: {to: backend, probability: 20%}
  - dns-error: {names: ["*.x"], rcode: BOGUS}
  - network-bandwidth: {to: backend, rate: fast}
load: {""",
    )
    errors = "\n".join(errors_of(experiment_file(text)))
    assert "faults[1].dns-error.rcode: 'BOGUS' is not one of SERVFAIL, NXDOMAIN, REFUSED, TIMEOUT" in errors
    assert "faults[2].network-bandwidth.rate: expected a rate such as 100KB/s" in errors
    fixed = text.replace("rcode: BOGUS", "rcode: SERVFAIL").replace("rate: fast", "rate: 1MB/s")
    errors = "\n".join(errors_of(experiment_file(fixed)))
    assert (
        "nothing reaches 'backend' through gameday's fault proxies" in errors
        and "{proxied:backend}" in errors
    )
    assert "DNS faults are declared but no service resolves names through gameday" in errors


@pytest.mark.skipif(os.geteuid() != 0, reason="isolation: netns needs root")
def test_the_plan_says_which_path_each_network_fault_takes(experiment_file):
    text = MINIMAL.replace(
        "load: {",
        """\
services:
  backend: {command: ["{python}", "-m", "x", "--host", "{host}", "--port", "{port}"], port: 18500,
            isolation: netns}
  frontend: {command: ["{python}", "-c", "pass", "{proxied:backend}"]}
faults:
  - network-loss: {to: backend, probability: 20%}
  - network-latency: {to: backend, delay: 100ms}
  - network-latency: {to: backend, delay: 100ms, path: PATH}
load: {""",
    )
    if netem_available():
        pytest.skip("this kernel has sch_netem: latency can take the kernel path")
    kernel = load_experiment(experiment_file(text.replace("PATH", "kernel")))  # the file is valid...
    with pytest.raises(SpecErrors) as caught:  # ...but this host cannot do it
        app.prepare(kernel)
    assert (
        "faults[2].network-latency.path: the kernel path cannot be used: this kernel has no sch_netem"
        in str(caught.value)
    )
    plan = app.prepare(load_experiment(experiment_file(text.replace("PATH", "auto")))).plan
    loss, latency, _ = plan.faults
    assert "in each one's network namespace (iptables/tc, kernel path)" in loss.description
    assert "through gameday's userspace proxy" in latency.description
    assert "no sch_netem" in latency.description


def test_variables_substitute_with_types_and_report_unknown_ones(experiment_file):
    text = MINIMAL.replace("users: 1", 'users: "${users}"').replace(
        "version: 1", "version: 1\nvariables: {users: 3}"
    )
    path = experiment_file(text)
    assert load_experiment(path).load.users == 3
    assert load_experiment(path, {"users": 7}).load.users == 7
    assert "did you mean 'users'" in errors_of(path, {"user": 7})[0]
    assert "must be at least 1" in errors_of(path, {"users": 0})[0]
    missing = experiment_file(MINIMAL.replace("users: 1", 'users: "${nobody}"'))
    assert "unknown variable ${nobody}" in errors_of(missing)[0]


def test_missing_locustfile_is_reported_at_its_field(experiment_file):
    errors = errors_of(experiment_file(MINIMAL.replace(str(REPO / "loadtests" / "checkout.py"), "nope.py")))
    assert ":3:" in errors[0] and "load.locustfile: file not found: nope.py" in errors[0]


def test_validate_command_exit_codes_and_no_traceback(experiment_file, tmp_path):
    good = experiment_file(MINIMAL, "good.yaml")
    bad = experiment_file(MINIMAL.replace("baseline: 1s", "baseline: soon"), "bad.yaml")
    ok = gameday("validate", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout
    for args in (
        ["validate", str(good), str(bad)],
        ["validate", str(tmp_path / "missing.yaml")],
        ["plan", str(bad)],
        ["run", str(bad)],
        ["validate", str(good), "--var", "nothing"],
    ):
        result = gameday(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("gameday: error: "), result.stderr
    unknown_command = gameday("explode")
    assert unknown_command.returncode == 2 and "Traceback" not in unknown_command.stderr


def test_docker_label_values_are_text_even_when_yaml_or_a_var_reads_them_as_numbers(experiment_file):
    docker = MINIMAL.replace(
        "version: 1\n", "version: 1\nvariables: {build: x}\nsafety_variables: [build]\n"
    ) + (
        "target: {driver: docker, allow: {labels: {build: '${build}', canary: 'true'}}}\n"
        "faults:\n  - container-stop: {selector: {labels: {port: 8080}}, count: 1}\n"
    )
    experiment = load_experiment(experiment_file(docker), {"build": 62865287})
    assert experiment.allow.labels == {"build": "62865287", "canary": "true"}
    assert experiment.faults[0].selection.selector.labels == {"port": "8080"}
    [error] = errors_of(experiment_file(docker.replace("canary: 'true'", "canary: yes")))
    assert "target.allow.labels.canary: expected a label value" in error and "quote values" in error


def test_dns_faults_select_containers_only_with_the_docker_driver(experiment_file):
    local = MINIMAL + "faults:\n  - dns-error: {names: [db], selector: {name: web-*}}\n"
    errors = errors_of(experiment_file(local))
    assert any("faults[0].dns-error.selector: selector is for the docker driver" in e for e in errors)
    docker = MINIMAL + "target: {driver: docker}\nfaults:\n  - dns-error: {names: [db]}\n"
    errors = errors_of(experiment_file(docker))
    assert any(
        "faults[0].dns-error: with the docker driver a DNS fault selects containers" in e for e in errors
    )


@pytest.mark.parametrize(
    ("guards", "expected"),
    [
        ("[{abort_if: {error_rate: 20%, for: 1500ms}}]", r"guards\[0\]\.abort_if\.for: .*not a whole number"),
        ("[{deadline: 2s}]", r"guards\[0\]\.deadline: deadline 2s is not longer than the phases \(5s\)"),
        ("[{abort_if: {latency: {p97: 1s}}}]", r"guards\[0\]\.abort_if\.latency.*one of p50, p90"),
        ("[{abort_if: {error_rate: 5%, latency: {p95: 1s}}}]", r"exactly one condition"),
        ("[{abort_if: {for: 2s}}]", r"exactly one condition"),
        ("[{stop_if: {error_rate: 5%}}]", r"abort_if: \{\.\.\.\} or deadline"),
    ],
)
def test_bad_guards_are_refused_with_the_place_and_a_hint(experiment_file, guards, expected):
    errors = errors_of(experiment_file(MINIMAL + f"guards: {guards}\n"))
    assert any(re.search(expected, error) for error in errors), errors


def test_guards_are_read_with_their_defaults(experiment_file):
    guards = (
        "guards:\n  - abort_if: {error_rate: 20%}\n  - abort_if: {latency: {p99: 2s}, for: 3s}\n"
        "  - abort_if: {probe: {http: {url: 'http://127.0.0.1:9/'}}, failures: 2}\n  - deadline: 1m\n"
    )
    error_rate, latency, probe, deadline = load_experiment(experiment_file(MINIMAL + guards)).guards
    assert error_rate == ErrorRateGuard(limit=0.2, seconds=1)
    assert latency == LatencyGuard(percentile="p99", limit=2.0, seconds=3)
    assert isinstance(probe, ProbeGuard) and (probe.every, probe.failures, probe.probe.url) == (
        1.0,
        2,
        "http://127.0.0.1:9/",
    )
    assert deadline == DeadlineGuard(limit=60.0)


def test_a_prometheus_guard_needs_a_bound(experiment_file):
    guard = "guards:\n  - abort_if: {prometheus: {url: 'http://127.0.0.1:9090', query: up}}\n"
    errors = errors_of(experiment_file(MINIMAL + guard))
    assert any(
        "guards[0].abort_if.prometheus: expected {url, query, and above: N or below: N}" in e for e in errors
    )
    fixed = guard.replace("query: up}", "query: up, below: 1}, for: 3s, every: 500ms")
    [prometheus] = load_experiment(experiment_file(MINIMAL + fixed)).guards
    assert prometheus == PrometheusGuard(
        url="http://127.0.0.1:9090", query="up", limit=1.0, below=True, seconds=3, every=0.5
    )


def test_the_load_always_has_a_request_timeout(experiment_file):
    assert load_experiment(experiment_file(MINIMAL)).load.request_timeout == 10.0
    slow_slo = MINIMAL.replace("slo: {availability: 99%}", "slo: {latency: {p99: 4s}}")
    assert (
        load_experiment(experiment_file(slow_slo)).load.request_timeout == 16.0
    )  # 4 x the largest objective
    own = MINIMAL.replace("users: 1}", "users: 1, request_timeout: 1500ms}")
    assert load_experiment(experiment_file(own)).load.request_timeout == 1.5


def test_an_open_model_load_is_sized_so_that_no_user_is_ever_late(experiment_file):
    text = MINIMAL.replace("users: 1}", "arrival_rate: 20, request_timeout: 5s}")
    load = load_experiment(experiment_file(text)).load
    assert (load.arrival_rate, load.users, load.pacing, load.spawn_rate) == (20, 100, 5.0, 20.0)
    both = errors_of(experiment_file(MINIMAL.replace("users: 1}", "users: 1, arrival_rate: 20}")))
    assert "users: N (closed model) or arrival_rate: N per second (open model), not both" in both[0]
    huge = errors_of(experiment_file(MINIMAL.replace("users: 1}", "arrival_rate: 5000}")))
    assert "needs 50000 users, more than 10000" in huge[0] and "hint: lower arrival_rate" in huge[0]


def test_per_endpoint_objectives_and_the_stall_allowance_are_read(experiment_file):
    text = MINIMAL.replace(
        "slo: {availability: 99%}",
        'slo: {availability: 99%, endpoints: {"GET /pay": {latency: {p95: 300ms}}}}',
    )
    slo = load_experiment(experiment_file(text)).slo
    assert slo.endpoints["GET /pay"].latency == {"p95": 0.3}
    assert slo.max_stall == 1.0  # the largest latency objective, at least 1s
    assert slo.latency_limits_us == (300_000,)
    assert load_experiment(experiment_file(MINIMAL)).slo.max_stall == 2.0  # no latency objective
    bad = errors_of(experiment_file(text.replace('"GET /pay"', '"/pay"')))
    assert "an endpoint as Locust names it" in bad[0]


def test_percentages_are_the_decimals_written(experiment_file):
    slo = load_experiment(experiment_file(MINIMAL.replace("99%", "99.9%"))).slo
    assert slo.availability == 0.999  # not 0.9990000000000001


def test_a_recovery_window_longer_than_the_recovery_phase_is_refused_and_the_default_fits(experiment_file):
    short = MINIMAL.replace("recovery: 1s", "recovery: 3s")
    assert load_experiment(experiment_file(short)).slo.recovery_window == 3.0  # default 5s, cut to fit
    errors = errors_of(experiment_file(short.replace("slo: {", "slo: {recovery_window: 5s, ")))
    assert "recovery_window (5s) is longer than the recovery phase (3s)" in errors[0]


def test_network_latency_adds_its_delay_once_per_exchange_by_default(experiment_file):
    text = MINIMAL.replace(
        "load: {",
        """\
services:
  backend: {command: ["{python}", "-m", "chaoslib_ext.demo.backend", "--port", "{port}"], port: 18400}
  frontend: {command: ["{python}", "-c", "pass", "{proxied:backend}"]}
faults:
  - network-latency: {to: backend, delay: 500ms}
load: {""",
    )
    [fault] = load_experiment(experiment_file(text)).faults
    assert fault.params.direction == "downstream"
    both = load_experiment(experiment_file(text.replace("delay: 500ms", "delay: 500ms, direction: both")))
    assert "(+1s per request/response exchange)" in make_plan(both).faults[0].description


SERVICE_AND_FRONT = MINIMAL.replace('host: "http://127.0.0.1:9"', 'host: "HOST"').replace(
    "phases:",
    """\
services:
  web:
    command: ["{python}", "-m", "chaoslib_ext.demo.backend", "--port", "{port}"]
    replicas: 2
    port: 18400
phases:""",
)


def test_the_load_can_go_to_a_service_gameday_starts_through_its_front(experiment_file):
    load = load_experiment(
        experiment_file(SERVICE_AND_FRONT.replace("HOST", "http://{proxied:web}/api"))
    ).load
    assert load.front == ("proxied", "web")
    experiment = load_experiment(experiment_file(SERVICE_AND_FRONT.replace("HOST", "http://{proxied:web}")))
    assert experiment.proxied == ("web",)  # so network faults on it reach the load
    [unknown] = errors_of(experiment_file(SERVICE_AND_FRONT.replace("HOST", "http://{proxied:api}")))
    assert "{proxied:api} names no declared service" in unknown and "known: web" in unknown
    [partial] = errors_of(experiment_file(SERVICE_AND_FRONT.replace("HOST", "http://x{proxied:web}:80")))
    assert "a placeholder may only stand for the whole host:port" in partial


def test_services_run_next_to_the_experiment_file_unless_told_otherwise(experiment_file, tmp_path):
    (tmp_path / "app.py").write_text("print('hi')\n")
    text = MINIMAL.replace("phases:", 'services:\n  app: {command: ["{python}", "app.py"]}\nphases:')
    [app] = load_experiment(experiment_file(text)).services.values()
    assert app.cwd == tmp_path.resolve()
    [error] = errors_of(
        experiment_file(text.replace('command: ["{python}", "app.py"]', 'command: ["./run.sh"]'))
    )
    assert "program not found: ./run.sh" in error
    [error] = errors_of(experiment_file(text.replace('app.py"]}', 'app.py"], cwd: nowhere}')))
    assert "no such directory" in error and "relative to the experiment file" in error


def test_ready_checks_take_a_url_a_port_or_a_command_and_only_one(experiment_file):
    service = 'services:\n  app: {command: ["{python}", "x"], port: 18400, ready: READY}\nphases:'
    for ready, attribute, value in (
        ('{tcp: "{port}"}', "tcp", "{port}"),
        ("{tcp: 9000}", "tcp", "9000"),
        ('{command: ["true"], timeout: 3s}', "command", ("true",)),
    ):
        [app] = load_experiment(
            experiment_file(MINIMAL.replace("phases:", service.replace("READY", ready)))
        ).services.values()
        assert getattr(app.ready, attribute) == value
    [error] = errors_of(
        experiment_file(MINIMAL.replace("phases:", service.replace("READY", '{tcp: 1, command: ["true"]}')))
    )
    assert "one of http, tcp or command" in error


def test_a_file_that_is_not_an_experiment_gets_one_line(tmp_path):
    compose = REPO / "experiments" / "docker" / "compose.yaml"
    result = gameday("validate", str(compose))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "not a gameday experiment (it has version:, services:)" in line


def test_a_locustfile_that_does_not_compile_is_refused_at_its_line(experiment_file, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("from locust import HttpUser\n\nclass User(HttpUser)\n    pass\n")
    [error] = errors_of(experiment_file(MINIMAL.replace(str(LOCUSTFILE), str(broken))))
    assert error.startswith(f"{broken}:3:21: expected ':' (the locustfile)")


def test_command_line_mistakes_are_one_line_with_a_suggestion(experiment_file):
    result = gameday("run", "x.yaml", "--vars", "a=1")
    assert result.returncode == 2
    assert result.stderr.strip() == "gameday: error: unknown option --vars (hint: did you mean --var?)"
    for duration in ("5S", "1min"):
        [error] = errors_of(experiment_file(MINIMAL.replace("baseline: 1s", f"baseline: {duration}")))
        assert "a number and a unit, in lower case: us, ms, s, m or h (250ms, 10s, 1m30s)" in error

"""Each driver under the contract, with targets of its own and a way to see a fault's effect from
outside (a process gone, a connection refused, a lookup failing), not from the call that was made.

A harness gives `fault(kind)`: one fault of that kind, with the parameters in EXAMPLES, on
targets it set up; `affected(kind, victims)`: whether the fault's effect is seen on each victim
now; and `close()`. Adding a driver means adding its harness here.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fake_driver import FakeDriver, FakeSelector, FakeTarget

from chaoslib_ext.drivers import driver_for
from chaoslib_ext.drivers.base import Driver, RunContext
from chaoslib_ext.errors import Location
from chaoslib_ext.events import Timeline
from chaoslib_ext.faults import KINDS
from chaoslib_ext.faults.base import FaultSpec, Selection
from chaoslib_ext.spec import load_experiment
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.trust import RunDirectory

# One fault of every kind: a kind with no example here fails the contract (test_every_kind_...).
EXAMPLES: dict[str, dict[str, Any]] = {
    "pod-kill": {"signal": "SIGKILL"},
    "container-stop": {},
    "container-pause": {},
    "container-restart": {},
    "network-latency": {"delay": "400ms"},
    "network-loss": {"probability": "100%"},
    "network-reset": {"probability": "100%"},
    "network-bandwidth": {"rate": "200B/s"},
    "network-partition": {"mode": "refuse"},
    "dns-error": {"names": ["*-1.*", "*-1"], "rcode": "SERVFAIL"},
    "dns-delay": {"names": ["*-1.*", "*-1"], "delay": "600ms"},
    "dns-spoof": {"names": ["*-1.*", "*-1"], "addresses": ["127.0.0.9"]},
}
SLOW_SECONDS = 0.35  # a latency, bandwidth or DNS delay fault makes an exchange take at least this


class Harness:
    driver: Driver
    ledger: Ledger
    experiment: Experiment

    def fault(self, kind: str) -> FaultSpec:
        return self.experiment.faults[0]

    def affected(self, kind: str, victims: set[str]) -> bool: ...

    def close(self) -> None:
        self.driver.stop()
        self.ledger.close()

    def remember(self, records: list[Any]) -> None:
        """What the apply's records say that `affected` needs (a killed pid, say)."""

    def _start(self, driver: Driver, tmp_path: Path) -> None:
        self.driver = driver
        self.ledger = Ledger.create(f"contract-{driver.name}-{os.getpid()}", tmp_path / "state")
        run_dir = RunDirectory.create(tmp_path / "reports", self.ledger.run_id)
        driver.start(RunContext(run_dir, Timeline(), self.ledger))


class FakeHarness(Harness):
    def __init__(self, tmp_path: Path) -> None:
        self._start(FakeDriver(None), tmp_path)

    @property
    def fake(self) -> FakeDriver:
        assert isinstance(self.driver, FakeDriver)
        return self.driver

    def fault(self, kind: str, count: int | None = 2) -> FaultSpec:
        params = KINDS[kind].parse(EXAMPLES[kind], ("faults", 0, kind), _NoErrors())
        return FaultSpec(
            kind, params, Selection(FakeSelector("a"), count), 0.0, None, 7, Location("contract")
        )

    def affected(self, kind: str, victims: set[str]) -> bool:
        scope = KINDS[kind].scope
        for name in victims:
            fake: FakeTarget = self.fake.fakes[name]
            effect = {
                "pod-kill": not fake.running,
                "container-restart": fake.starts > 1,
                "container-stop": fake.suspended == "stop",
                "container-pause": fake.suspended == "pause",
            }.get(kind, bool(fake.impaired) if scope == "network" else bool(fake.lookups_hit))
            if not effect:
                return False
        return bool(victims)


KUBERNETES_EXAMPLES = {  # what Chaos Mesh can express: traffic leaving the pods, packets dropped
    "network-loss": {"direction": "downstream"},
    "network-partition": {"direction": "downstream", "mode": "blackhole"},
    "dns-error": {"names": ["web-1.*"]},
}
KUBERNETES_EXPERIMENT = """\
version: 1
title: contract
target: {{driver: kubernetes, namespace: shop, allow: {{namespaces: [shop]}}}}
load: {{locustfile: {locustfile}, host: "http://127.0.0.1:9", users: 1}}
slo: {{availability: 99%}}
phases: {{baseline: 1s, fault: 5s, recovery: 1s}}
faults:
  - {kind}: {fault}
"""


class KubernetesHarness(Harness):
    """A Deployment of three pods in `shop` on the Kubernetes API double, with Chaos Mesh; what a
    fault did is read back from the API: pods deleted, Chaos Mesh objects naming the victims."""

    def __init__(self, tmp_path: Path, kind: str, cluster: Any, locustfile: Path) -> None:
        self.cluster = cluster
        spec = {**EXAMPLES[kind], **KUBERNETES_EXAMPLES.get(kind, {}), "seed": 7, "count": 2}
        spec["selector"] = {"deployment": "web"}
        text = KUBERNETES_EXPERIMENT.format(locustfile=locustfile, kind=kind, fault=_flow(spec))
        path = tmp_path / "contract.yaml"
        path.write_text(text)
        self.experiment = load_experiment(path)
        self._start(driver_for(self.experiment), tmp_path)

    def affected(self, kind: str, victims: set[str]) -> bool:
        scope = KINDS[kind].scope
        if scope == "process":
            live = {p["metadata"]["name"] for p in self.cluster.live_pods("shop", "app=web")}
            terminating = {
                p["metadata"]["name"]
                for p in self.cluster.live_pods("shop", "app=web")
                if p["metadata"].get("deletionTimestamp")
            }
            return bool(victims) and all(name not in live or name in terminating for name in victims)
        plural = "dnschaos" if scope == "names" else "networkchaos"
        named = {
            pod
            for item in self.cluster.objects_of(plural)
            for pod in item["spec"]["selector"]["pods"]["shop"]
        }
        return bool(victims) and victims <= named


class _NoErrors:
    def error(self, path: tuple[str | int, ...], message: str, hint: str = "") -> None:
        raise AssertionError(f"{path}: {message}")


LOCAL_EXPERIMENT = """\
version: 1
title: contract
load: {{locustfile: {locustfile}, host: "http://127.0.0.1:{port}", users: 1}}
slo: {{availability: 99%}}
phases: {{baseline: 1s, fault: 5s, recovery: 1s}}
services:
  backend:
    command: ["{{python}}", "-m", "chaoslib_ext.demo.backend", "--port", "{{port}}", "--name", "{{name}}"]
    replicas: 3
    port: {port}
    restart: {{policy: never}}
  caller:
    command: ["{{python}}", "-c", "import time; time.sleep(600)", "{{proxied:backend}}", "{{dns}}"]
faults:
  - {kind}: {fault}
"""


class LocalHarness(Harness):
    """Three demo backends behind gameday's proxies, and the run's DNS server."""

    def __init__(self, tmp_path: Path, kind: str, port: int, locustfile: Path) -> None:
        spec = dict(EXAMPLES[kind], seed=7)
        if KINDS[kind].scope == "process":
            spec.update(selector={"service": "backend"}, count=2)
        elif KINDS[kind].scope == "network":
            spec.update(to="backend", count=2)
        text = LOCAL_EXPERIMENT.format(locustfile=locustfile, port=port, kind=kind, fault=_flow(spec))
        path = tmp_path / "contract.yaml"
        path.write_text(text)
        self.experiment = load_experiment(path)
        self._start(driver_for(self.experiment), tmp_path)
        self.pids: dict[str, int] = {}

    def remember(self, records: list[Any]) -> None:
        self.pids.update({r.target: r.detail["pid"] for r in records if "pid" in r.detail})

    def affected(self, kind: str, victims: set[str]) -> bool:
        driver: Any = self.driver
        scope = KINDS[kind].scope
        if scope == "process":
            return all(_gone(self.pids[name]) for name in victims)
        if scope == "names":
            return _resolves_badly(kind, driver.dns.address, "backend-1.gameday.internal")
        by_name = {proxy.name: proxy for proxy in driver.proxies["backend"]}
        return all(_exchange_hurt(kind, "127.0.0.1", by_name[name].port, "/work") for name in victims)


DOCKER_EXPERIMENT = """\
version: 1
title: contract
variables: {{label: x}}
safety_variables: [label]
target: {{driver: docker, allow: {{labels: {{gameday.test: "${{label}}"}}}}}}
load: {{locustfile: {locustfile}, host: "http://127.0.0.1:9", users: 1}}
slo: {{availability: 99%}}
phases: {{baseline: 1s, fault: 5s, recovery: 1s}}
faults:
  - {kind}: {fault}
"""


def _tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


BIG_FILE = _tar_of("big", b"x" * 20_000)  # 100 s at the example's 200 B/s


class DockerHarness(Harness):
    """Three web containers on a network of their own (t-0, t-1, t-2), each serving a 20 KB file;
    DNS faults are seen in lookups of t-1 made from inside the victims' namespaces."""

    def __init__(self, tmp_path: Path, kind: str, client: Any, label: str, locustfile: Path) -> None:
        from docker_support import address, answers, run_web_containers, wait_until

        network = client.networks.create(f"gdtest-{label}", labels={"gameday.test": label})
        self.label = label
        self.containers = {c.name: c for c in run_web_containers(client, 3, "t", label, network=network.name)}
        for container in self.containers.values():
            wait_until(lambda c=container: answers(address(c)))
            assert container.put_archive("/www", BIG_FILE)
        self.started = {name: c.attrs["State"]["StartedAt"] for name, c in self.containers.items()}
        spec = dict(EXAMPLES[kind], seed=7, count=2, selector={"labels": {"role": "t"}})
        text = DOCKER_EXPERIMENT.format(locustfile=locustfile, kind=kind, fault=_flow(spec))
        path = tmp_path / "contract.yaml"
        path.write_text(text)
        self.experiment = load_experiment(path, {"label": label})
        self._start(driver_for(self.experiment), tmp_path)

    def affected(self, kind: str, victims: set[str]) -> bool:
        from docker_support import address, lookups

        scope = KINDS[kind].scope
        for name in victims:
            container = self.containers[name]
            container.reload()
            state = container.attrs["State"]
            if scope == "network":
                path = "/big" if kind == "network-bandwidth" else "/work"
                effect = _exchange_hurt(kind, address(container), 8080, path)
            elif scope == "names":
                tally, slowest = lookups(container, f"gdtest-{self.label}-t-1", 1)
                effect = {
                    "dns-error": "SERVFAIL" in tally,
                    "dns-delay": slowest >= SLOW_SECONDS,
                    "dns-spoof": "NOERROR=127.0.0.9" in tally,
                }[kind]
            else:
                effect = {
                    "pod-kill": state["Status"] == "exited",
                    "container-stop": state["Status"] == "exited",
                    "container-pause": state["Status"] == "paused",
                    "container-restart": state["StartedAt"] != self.started[name],
                }[kind]
            if not effect:
                return False
        return bool(victims)


def _flow(spec: dict[str, Any]) -> str:
    """A YAML flow mapping of `spec`."""
    import json

    return json.dumps(spec)


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def _exchange_hurt(kind: str, host: str, port: int, path: str) -> bool:
    """One HTTP exchange from outside: refused, reset, unanswered or slow when the fault holds."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=1.5) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise AssertionError(f"the test's own server answered {error.code} for {path}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return True  # refused, reset, unanswered, or too slow to finish in time
    return time.monotonic() - started >= SLOW_SECONDS


def _resolves_badly(kind: str, server: str, name: str) -> bool:
    """One lookup from outside, straight to the DNS server the fault acts on."""
    from dnslib import RCODE, DNSRecord

    host, port = server.rsplit(":", 1)
    question = DNSRecord.question(name)
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(question.pack(), (host, int(port)))
        reply = DNSRecord.parse(sock.recv(4096))
    took = time.monotonic() - started
    if kind == "dns-error":
        return reply.header.rcode == RCODE.SERVFAIL
    if kind == "dns-delay":
        return took >= SLOW_SECONDS
    return [str(rr.rdata) for rr in reply.rr] == ["127.0.0.9"]

"""The kernel path, as root: replicas in network namespaces of their own, and faults as iptables
rules and tc qdiscs there. Every change is written to the run's ledger before it is made, and
every rule carries the comment `gameday:<run>:<fault>`, so that revert and `gameday recover`
remove exactly what the run added.

This kernel has tbf but no sch_netem: latency, jitter, corruption and duplication cannot go
through here; `netem_available()` says so and the local driver sends those faults to the userspace
path.
"""

from __future__ import annotations

import ipaddress
import os
import random
import subprocess
from dataclasses import dataclass
from functools import cache

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.faults.base import TrafficFault
from chaoslib_ext.faults.network_bandwidth import NetworkBandwidth
from chaoslib_ext.faults.network_latency import NetworkLatency
from chaoslib_ext.faults.network_loss import NetworkLoss
from chaoslib_ext.faults.network_partition import NetworkPartition
from chaoslib_ext.faults.network_reset import NetworkReset
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.undo import (
    DeleteLink,
    DeleteNamespace,
    DeleteQdisc,
    DeleteRule,
    Place,
    UndoAction,
    tool,
)

SUBNET = ipaddress.IPv4Network("10.231.0.0/16")  # only ever inside namespaces this run creates


def is_root() -> bool:
    return os.geteuid() == 0


def run(argv: list[str], place: Place | None = None) -> None:
    """Run a tool (from the fixed PATH of undo.tool) on the host or in a namespace; RunAborted
    when it says it failed, which means it changed nothing."""
    result = (place or Place()).run(argv)
    if result.returncode != 0:
        raise RunAborted(
            f"{' '.join(argv)} failed: {result.stderr.strip()[:300]}",
            hint="the kernel path needs root, iproute2 and iptables",
        )


@cache
def netem_available() -> bool:
    """Whether tc can create a netem qdisc here. Probed in an anonymous network namespace
    (`unshare -n`) that vanishes with the probe, so validate and plan still change nothing."""
    if not is_root():
        return False
    try:
        probe = subprocess.run(
            [tool("unshare"), "-n", tool("tc"), "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError, RunAborted):
        return False
    return probe.returncode == 0


def used_subnets() -> set[ipaddress.IPv4Network]:
    output = subprocess.run([tool("ip"), "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    found: set[ipaddress.IPv4Network] = set()
    for line in output.splitlines():
        parts = line.split()
        if "inet" in parts:
            interface = ipaddress.ip_interface(parts[parts.index("inet") + 1])
            if isinstance(interface, ipaddress.IPv4Interface) and interface.ip in SUBNET:
                found.add(ipaddress.IPv4Network(f"{interface.ip}/30", strict=False))
    return found


@dataclass
class Namespace:
    """A network namespace joined to the host by a veth pair: one a run made for a replica (entered
    with `ip netns exec`), or a container's (entered with `nsenter --net=SANDBOX_KEY`)."""

    name: str
    host_veth: str
    inner_veth: str
    address: str  # the replica's own address: what it binds, what callers dial
    sandbox: str | None = None  # a container's: its sandbox key (else a namespace this run made)

    @property
    def place(self) -> Place:
        return Place(sandbox=self.sandbox) if self.sandbox else Place(netns=self.name)

    def exec_prefix(self) -> list[str]:
        """How to run a command inside (`ip netns exec NAME`, `nsenter --net=KEY`)."""
        return self.place.prefix()


@dataclass(frozen=True)
class KernelTarget:
    """Where a kernel-path network fault goes: a replica's (or a container's) namespace, and the
    port its rules match (None: all its TCP traffic)."""

    name: str
    namespace: Namespace
    port: int | None


class NamespaceFactory:
    def __init__(self, run_tag: str, ledger: Ledger) -> None:
        self.run_tag = run_tag  # a few hex digits of the run id, to keep names short and recognisable
        self.ledger = ledger
        self.count = 0
        self.entries: list[tuple[int, UndoAction]] = []  # ledger entries of what was made
        used = used_subnets()
        subnets = list(SUBNET.subnets(new_prefix=30))
        start = random.Random(run_tag).randrange(len(subnets))
        self.free = [s for s in subnets[start:] + subnets[:start] if s not in used]

    def create(self, service: str, index: int) -> Namespace:
        self.count += 1
        subnet = self.free.pop(0)
        host, inner = list(subnet.hosts())
        suffix = f"{self.run_tag}{self.count:03d}"
        namespace = Namespace(
            f"gd-{self.run_tag}-{service}-{index}", f"gd{suffix}h", f"gd{suffix}n", str(inner)
        )
        self._change(
            f"network namespace {namespace.name}",
            ["ip", "netns", "add", namespace.name],
            DeleteNamespace(namespace.name),
        )
        self._change(
            f"veth {namespace.host_veth}",
            ["ip", "link", "add", namespace.host_veth, "type", "veth", "peer", "name", namespace.inner_veth],
            DeleteLink(namespace.host_veth),
        )
        inside = namespace.place
        for argv, place in (
            (["ip", "link", "set", namespace.inner_veth, "netns", namespace.name], None),
            (["ip", "addr", "add", f"{host}/30", "dev", namespace.host_veth], None),
            (["ip", "link", "set", namespace.host_veth, "up"], None),
            (["ip", "addr", "add", f"{inner}/30", "dev", namespace.inner_veth], inside),
            (["ip", "link", "set", namespace.inner_veth, "up"], inside),
            (["ip", "link", "set", "lo", "up"], inside),
        ):
            run(argv, place)
        return namespace

    def _change(self, what: str, argv: list[str], action: UndoAction) -> None:
        """Write the undo down, then act. Only a definite failure (the tool said so) marks the
        entry done: a signal in between leaves it for the clean-up (or `recover`) to undo."""
        entry = self.ledger.record(what, action)
        self.entries.append((entry, action))
        try:
            run(argv)
        except RunAborted:
            self.entries.pop()
            self.ledger.done(entry)  # it was not made (maybe it exists and is not ours): never undo it
            raise

    def remove_all(self) -> list[str]:
        """Delete every namespace and veth made, newest first; return what could not be undone."""
        problems = []
        for entry, action in reversed(self.entries):
            problem = action.perform()
            if problem is None:
                self.ledger.done(entry)
            else:
                problems.append(problem)
        self.entries.clear()
        return problems


@dataclass(frozen=True)
class KernelRule:
    """One change in a namespace (or on the host end of its veth): an iptables rule or a tc qdisc,
    how to add it there, and its undo."""

    what: str
    place: Place
    add: list[str]
    undo: DeleteRule | DeleteQdisc


def fault_rules(
    namespace: Namespace, fault: TrafficFault, port: int | None, comment: str
) -> list[KernelRule]:
    """The iptables rules and qdiscs that make one network fault on one namespaced replica."""
    inside = namespace.place
    tag = ["-m", "comment", "--comment", comment]
    probability = fault.probability if isinstance(fault, NetworkLoss | NetworkReset) else 1.0
    chance = (
        []
        if probability >= 1
        else ["-m", "statistic", "--mode", "random", "--probability", f"{probability:.6f}"]
    )
    rules = []
    to_port = [] if port is None else ["--dport", str(port)]  # no port: a whole container's TCP
    from_port = [] if port is None else ["--sport", str(port)]
    where = "all TCP" if port is None else f":{port}"

    def iptables(chain: str, match: list[str], target: list[str], what: str) -> None:
        delete = DeleteRule(inside, "filter", (chain, "-p", "tcp", *match, *chance, *tag, "-j", *target))
        rules.append(KernelRule(what, inside, delete.add_argv(), delete))

    if isinstance(fault, NetworkLoss):
        if fault.applies("upstream"):
            iptables("INPUT", to_port, ["DROP"], f"drop {probability:.0%} of packets to {where}")
        if fault.applies("downstream"):
            iptables("OUTPUT", from_port, ["DROP"], f"drop {probability:.0%} of packets from {where}")
    elif isinstance(fault, NetworkReset):
        iptables(
            "INPUT",
            ["--syn", *to_port],
            ["REJECT", "--reject-with", "tcp-reset"],
            f"reset {probability:.0%} of connections to {where}",
        )
    elif isinstance(fault, NetworkPartition) and fault.mode == "refuse":
        # An RST must go to the client, so refusing works on what arrives, whatever the direction.
        iptables("INPUT", to_port, ["REJECT", "--reject-with", "tcp-reset"], f"partition {where} (refuse)")
    elif isinstance(fault, NetworkPartition):
        if fault.applies("upstream"):
            iptables("INPUT", to_port, ["DROP"], f"partition {where} (blackhole)")
        if fault.applies("downstream"):
            iptables("OUTPUT", from_port, ["DROP"], f"partition replies from {where} (blackhole)")
    elif isinstance(fault, NetworkBandwidth):
        bits = f"{max(1, round(fault.rate * 8))}bit"
        burst = f"{max(1600, round(fault.rate / 10))}b"  # about 100 ms of data, at least one packet
        qdisc = ["tbf", "rate", bits, "burst", burst, "latency", "1s"]
        rules += [_qdisc(place, device, qdisc) for place, device in _shaped_devices(namespace, fault)]
    elif isinstance(fault, NetworkLatency) and netem_available():
        # Not exercised where gameday is developed (those kernels have no sch_netem): preflight
        # refuses or reroutes latency there, so this only runs where netem_available() proved it works.
        qdisc = ["netem", "delay", f"{fault.delay * 1000:g}ms"]
        if fault.jitter > 0:
            qdisc += [
                f"{fault.jitter * 1000:g}ms",
                *(["distribution", "normal"] if fault.distribution == "normal" else []),
            ]
        rules += [_qdisc(place, device, qdisc) for place, device in _shaped_devices(namespace, fault)]
    else:
        raise RunAborted(
            f"{fault.kind} has no kernel path on this machine (no sch_netem)",
            hint="reach the service through {proxied:SERVICE} to use the userspace proxy",
        )
    return rules


class KernelChanges:
    """The rules and qdiscs one fault added, each recorded in the run's ledger before it was made,
    so that a signal in the middle leaves it to the revert and to `gameday recover`."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.made: list[tuple[int, KernelRule]] = []  # (ledger entry, rule), in the order made

    def add(self, namespace: Namespace, fault: TrafficFault, port: int | None, tag: str) -> list[str]:
        """The fault's rules in one namespace; what they are. A rule that cannot be added raises
        RunAborted and is never deleted (the same rule may be another fault's); those before it
        stay, for `remove`."""
        rules = fault_rules(namespace, fault, port, f"gameday:{self.ledger.run_id}:{tag}")
        for rule in rules:
            try:
                with self.ledger.intent(f"{rule.what} in {namespace.name}", rule.undo, RunAborted) as entry:
                    self.made.append((entry, rule))
                    run(rule.add, rule.place)
            except RunAborted:
                self.made.pop()
                raise
        return [rule.what for rule in rules]

    def remove(self) -> None:
        """Take every rule out, the last first; a rule that stays keeps its ledger entry open and
        raises RunAborted once the others are out."""
        problems = []
        for entry, rule in reversed(self.made):
            problem = rule.undo.perform()
            if problem is None:
                self.ledger.done(entry)
            else:
                problems.append(problem)
        self.made = []
        if problems:
            raise RunAborted(f"could not remove a kernel rule: {problems[0]}", hint="run `gameday recover`")


def _shaped_devices(namespace: Namespace, fault: TrafficFault) -> list[tuple[Place, str]]:
    """Where a qdisc shapes each direction: the replica's egress carries its responses
    (downstream), the host side's egress carries the requests to it (upstream)."""
    devices = []
    if fault.applies("downstream"):
        devices.append((namespace.place, namespace.inner_veth))
    if fault.applies("upstream"):
        devices.append((Place(), namespace.host_veth))
    return devices


def _qdisc(place: Place, device: str, qdisc: list[str]) -> KernelRule:
    return KernelRule(
        f"{' '.join(qdisc[:2])} on {device}",
        place,
        ["tc", "qdisc", "add", "dev", device, "root", *qdisc],
        DeleteQdisc(place, device),
    )

"""gameday as root on a shared machine: what another user plants or swaps is never acted on.

The other user is uid 65534 (nobody, group nogroup), through setpriv; the state directory they
share with root is 3770 root:nogroup with GAMEDAY_STATE_GROUP=nogroup, as the README says to
share one. Every attack is made with real files, real processes and the real command.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MINIMAL, REPO, alive, gameday

from chaoslib_ext.state.ledger import ledgers, recover
from chaoslib_ext.state.locks import TargetLock
from chaoslib_ext.state.undo import DeleteNamespace, KillProcessGroup, Refused, parse, process_start_ticks

NOBODY = 65534
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="a second user's attacks need root to set up"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed"),
]


def as_nobody(*argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run argv as the other user (uid and gid 65534, no other groups)."""
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        **kwargs,
    )


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A scratch directory the other user can reach (pytest's own is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="gameday-trust-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared_state(public_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory root shares with the group nogroup (3770), as the README describes."""
    group = grp.getgrgid(NOBODY).gr_name
    state = public_tmp / "state"
    state.mkdir()
    os.chown(state, 0, NOBODY)
    state.chmod(0o3770)
    monkeypatch.setenv("GAMEDAY_STATE_DIR", str(state))
    monkeypatch.setenv("GAMEDAY_STATE_GROUP", group)
    return state


def plant(state: Path, name: str, lines: list[dict]) -> None:
    """Write a ledger as the other user."""
    text = "".join(json.dumps(line) + "\n" for line in lines)
    result = as_nobody(sys.executable, "-c", f"open({str(state / name)!r}, 'w').write({text!r})")
    assert result.returncode == 0, result.stderr


def test_a_planted_ledger_runs_nothing_as_root(shared_state: Path, tmp_path: Path):
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)  # root's, with public start ticks
    marker = tmp_path / "pwned"
    try:
        ticks = process_start_ticks(victim.pid)
        dead = {"run": "evil", "pid": 999_999, "start_ticks": 1}
        plant(
            shared_state,
            "evil.ledger",
            [
                dead,
                {
                    "id": 1,
                    "what": "innocent-looking",
                    "undo": {"kind": "command", "argv": ["/bin/sh", "-c", f"id > {marker}"]},
                },
                {
                    "id": 2,
                    "what": "a root process",
                    "undo": {"kind": "process-group", "pgid": victim.pid, "start_ticks": ticks},
                },
                {
                    "id": 3,
                    "what": "init",
                    "undo": {"kind": "process-group", "pgid": 1, "start_ticks": process_start_ticks(1)},
                },
                {
                    "id": 4,
                    "what": "recover's own group",
                    "undo": {"kind": "process-group", "pgid": 0, "start_ticks": 1},
                },
                {
                    "id": 5,
                    "what": "negative",
                    "undo": {"kind": "process-group", "pgid": -5, "start_ticks": 1},
                },
                {"id": 6, "what": "no argv", "undo": {"kind": "command"}},
                {"id": 7, "what": "a rule", "undo": {"kind": "netns", "name": "gd-0000-x-0"}},
            ],
        )
        result = gameday("recover")
        assert "Traceback" not in result.stderr
        assert result.returncode == 3  # something could not be undone: named, never run
        assert not marker.exists()
        assert victim.poll() is None, "root's process was killed on the word of another user's ledger"
        assert result.stderr.count("could not undo: evil: ") == 7, result.stderr
        assert "innocent-looking: cannot undo: not an undo gameday writes" in result.stderr
        assert f"process group {victim.pid} belongs to another user than the run's" in result.stderr
        assert "only a run as root makes one" in result.stderr
        # and it does not hold up root's own runs: it is not root's ledger
        assert not [state for state in ledgers() if state.blocks]
    finally:
        victim.kill()
        victim.wait()


def test_a_fifo_or_a_symlink_named_like_a_ledger_hangs_nothing(shared_state: Path, tmp_path: Path):
    assert as_nobody("mkfifo", str(shared_state / "x.ledger")).returncode == 0
    secret = tmp_path / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    assert as_nobody("ln", "-s", str(secret), str(shared_state / "y.ledger")).returncode == 0
    started = time.monotonic()
    result = gameday("recover", timeout=30)
    assert time.monotonic() - started < 20
    assert "x.ledger: not a regular file" in result.stderr
    assert "y.ledger" in result.stderr and "Traceback" not in result.stderr
    assert secret.read_text() == "root's\n"


def test_a_state_directory_others_can_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, experiment_file
):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o1777)  # like /tmp: anyone may plant a ledger there
    monkeypatch.setenv("GAMEDAY_STATE_DIR", str(state))
    for command in (["recover"], ["run", str(experiment_file(MINIMAL))]):
        result = gameday(*command)
        assert result.returncode == 3, result.stdout + result.stderr
        [line] = result.stderr.splitlines()
        assert f"{state}: every user can write to it (hint: chmod o-w {state})" in line


def test_a_symlink_planted_as_a_lock_file_is_refused_and_redirects_nothing(
    shared_state: Path, tmp_path: Path
):
    secret = tmp_path / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    locks = shared_state / "locks"
    locks.mkdir()
    os.chown(locks, 0, NOBODY)
    locks.chmod(0o3770)
    key = "local 127.0.0.1:9"
    name = hashlib.sha256(key.encode()).hexdigest()[:16] + ".lock"  # predictable: the attacker plants it
    assert as_nobody("ln", "-s", str(secret), str(locks / name)).returncode == 0
    with pytest.raises(Exception, match="cannot use the lock file"):
        TargetLock.acquire(key, "run", tmp_path / "x.yaml")
    assert secret.read_text() == "root's\n"


def test_a_report_directory_another_user_owns_is_refused(tmp_path: Path, experiment_file):
    theirs = tmp_path / "reports"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    result = gameday("run", str(experiment_file(MINIMAL)), "--report-dir", str(theirs))
    assert result.returncode == 2
    assert f"{theirs}: owned by uid {NOBODY}, not by you or root" in result.stderr
    assert list(theirs.iterdir()) == []


def test_recover_acts_on_the_engine_and_tools_it_recorded_not_on_its_environment(tmp_path: Path):
    # cron's PATH has no /usr/sbin: the namespace is still deleted, not reported as already gone
    name = f"gd-{os.getpid() % 10000:04x}-recovertest-0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        dead_run = {"run": "died", "pid": 999_999, "start_ticks": 1}
        entry = {"id": 1, "what": f"network namespace {name}", "undo": DeleteNamespace(name).to_data()}
        (state / "died.ledger").write_text(json.dumps(dead_run) + "\n" + json.dumps(entry) + "\n")
        env = {**os.environ, "PATH": "/nonexistent", "GAMEDAY_STATE_DIR": str(tmp_path / "state")}
        result = subprocess.run(
            [sys.executable, "-m", "chaoslib_ext", "recover"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert not Path("/run/netns", name).exists()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_only_the_undo_forms_gameday_writes_parse():
    rule = ["INPUT", "-p", "tcp", "-m", "comment", "--comment", "gameday:run-1:fault-1", "-j", "DROP"]
    ours = {"kind": "iptables", "in": {"netns": "gd-00ab-svc-0"}, "table": "filter", "rule": rule}
    assert parse(ours, "run-1", 0)
    refused = [
        (ours, "run-2"),  # the comment names another run
        ({**ours, "rule": [*rule[:-2], "-F"]}, "run-1"),  # a command option smuggled in
        ({**ours, "in": {"netns": "../../etc"}}, "run-1"),
        ({"kind": "process-group", "pgid": 1, "start_ticks": 5}, "run-1"),
        ({"kind": "process-group", "pgid": 100, "start_ticks": "5"}, "run-1"),
        ({"kind": "docker", "verb": "rm", "id": "a" * 64, "engine": "unix:///var/run/docker.sock"}, "run-1"),
        ({"kind": "command", "argv": ["rm", "-rf", "/"]}, "run-1"),
    ]
    for data, run_id in refused:
        with pytest.raises(Refused):
            parse(data, run_id, 0)
    with pytest.raises(Refused, match="only a run as root"):
        parse(ours, "run-1", NOBODY)


def test_a_process_group_is_in_the_ledger_before_its_program_runs():
    # a parent that dies between starting a held child and its ledger write leaves nothing running
    script = (
        "import os\n"
        "from chaoslib_ext.launch import start_held\n"
        "process, release = start_held(['sleep', '300'])\n"
        "print(process.pid, flush=True)\n"
        "os._exit(0)  # dies before the ledger write: release() never comes\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    pid = int(child.stdout.split()[0])
    deadline = time.monotonic() + 10
    while running(pid):
        assert time.monotonic() < deadline, "the held child outlived its parent"
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Alive, and never became the program it was held from."""
    if not alive(pid):
        return False
    assert Path(f"/proc/{pid}/comm").read_text().strip() != "sleep", "it ran its program"
    return True


def test_root_stops_what_a_dead_run_of_another_user_started(shared_state: Path):
    sleeper = as_nobody(
        sys.executable,
        "-c",
        "import subprocess; print(subprocess.Popen(['sleep', '300'], start_new_session=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)",
    )
    pid = int(sleeper.stdout)
    try:
        ticks = process_start_ticks(pid)
        plant(
            shared_state,
            "theirs.ledger",
            [
                {"run": "theirs", "pid": 999_999, "start_ticks": 1},
                {"id": 1, "what": "their service", "undo": KillProcessGroup(pid, ticks).to_data()},
            ],
        )
        done, failed = recover()  # root may stop what that user's dead run started
        assert done == ["theirs: their service"] and failed == []
        deadline = time.monotonic() + 5
        while alive(pid):
            assert time.monotonic() < deadline, "their process still runs"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_validate_refuses_devices_and_pipes_without_hanging(tmp_path: Path):
    fifo = tmp_path / "exp.yaml"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        result = gameday("validate", path, timeout=20)
        assert result.returncode == 2, result.stderr
        assert "not a regular file" in result.stderr and "Traceback" not in result.stderr


def test_run_logs_are_private_and_reports_publishable(tmp_path: Path):
    from chaoslib_ext.state.trust import RunDirectory

    run = RunDirectory.create(tmp_path / "reports", "run-1")
    with run.create_log("svc-0.log") as log:
        log.write(b"token=abc\n")
    run.rewrite_logs(lambda text: text.replace("abc", "***"))
    run.write("report.json", "{}")
    # reports (masked) can be published; logs, which may hold secrets until masked, are private
    assert stat.S_IMODE((tmp_path / "reports" / "run-1").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "reports" / "run-1" / "report.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "reports" / "run-1" / "logs").stat().st_mode) == 0o700
    assert stat.S_IMODE(run.log_path("svc-0.log").stat().st_mode) == 0o600
    assert run.read_log("svc-0.log") == "token=***\n"
    run.close()


def test_lock_files_are_removed_when_released_and_stale_ones_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    state = tmp_path / "state"
    monkeypatch.setenv("GAMEDAY_STATE_DIR", str(state))
    TargetLock.acquire("local 127.0.0.1:1", "one", tmp_path / "x.yaml").release()
    assert list((state / "locks").iterdir()) == []
    (state / "locks" / "0123456789abcdef.lock").write_text("{}")  # a run killed before it let go
    held = TargetLock.acquire("local 127.0.0.1:2", "two", tmp_path / "x.yaml")
    TargetLock.acquire("local 127.0.0.1:3", "three", tmp_path / "x.yaml").release()
    assert [p.name for p in (state / "locks").iterdir()] == [
        hashlib.sha256(b"local 127.0.0.1:2").hexdigest()[:16] + ".lock"
    ]
    held.release()
    assert list((state / "locks").iterdir()) == []

"""Hostile and broken input: whatever the file holds, loading it gives an Experiment or a
SpecError (a one-line message with the place), never another exception and never a hang.

Property-based (hypothesis) over text, bytes and structured documents, plus a seeded mutation
fuzzer over the shipped experiments, plus the real command on a sample of the fuzzer's outputs.
(Alias bombs, deep nesting, huge and non-UTF-8 files: their own messages, in test_spec.py.)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MINIMAL, REPO, gameday
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaoslib_ext import app
from chaoslib_ext.drivers import driver_for
from chaoslib_ext.errors import SpecError
from chaoslib_ext.spec import parse_overrides

# generous: a hang would take forever, a slow machine takes a little longer
PROPERTIES = settings(
    max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SHIPPED = sorted((REPO / "experiments").glob("*.yaml"))


def outcome(path: Path, overrides: dict[str, Any] | None = None) -> str:
    """'ok' or 'refused'; anything else escapes and fails the test with its traceback. What
    loads is also planned, as `validate` and `run` do: plan, blast radius, lock key."""
    try:
        experiment = app.validate(path, overrides)
        driver = driver_for(experiment)
        if driver.offline:
            driver.lock_key()
    except SpecError as error:
        assert str(error).strip(), "an error with no message"
        return "refused"
    return "ok"


@PROPERTIES
@given(text=st.text(max_size=2000))
def test_any_text_is_loaded_or_refused(tmp_path, text):
    path = tmp_path / "any.yaml"
    path.write_text(text, encoding="utf-8")
    outcome(path)


@PROPERTIES
@given(data=st.binary(max_size=2000))
def test_any_bytes_are_loaded_or_refused(tmp_path, data):
    path = tmp_path / "any.yaml"
    path.write_bytes(data)
    outcome(path)


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
FIELDS = [
    ("title",),
    ("load",),
    ("load", "users"),
    ("load", "host"),
    ("slo",),
    ("slo", "availability"),
    ("slo", "latency"),
    ("phases",),
    ("phases", "fault"),
    ("faults",),
    ("guards",),
    ("target",),
    ("services",),
    ("variables",),
    ("secrets",),
    ("secrets", "token"),
    ("target", "max_share"),
    ("steady_state",),
]


@PROPERTIES
@given(where=st.sampled_from(FIELDS), value=VALUES)
def test_any_value_in_any_field_is_loaded_or_refused(tmp_path, where, value):
    document = yaml.safe_load(MINIMAL)
    node = document
    for key in where[:-1]:
        node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else node
    node[where[-1]] = value
    path = tmp_path / "structured.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    outcome(path)


@PROPERTIES
@given(pairs=st.lists(st.text(max_size=40), max_size=5))
def test_any_var_override_is_taken_or_refused(tmp_path, pairs):
    path = tmp_path / "vars.yaml"
    path.write_text(MINIMAL.replace("version: 1\n", "version: 1\nvariables: {users: 1}\n"), encoding="utf-8")
    try:
        overrides = parse_overrides(pairs)
    except SpecError:
        return
    outcome(path, overrides)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: flip a byte, delete a span, duplicate a span, insert YAML syntax."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        at = rng.randrange(len(data))
        edit = rng.randrange(4)
        if edit == 0:
            data[at] = rng.randrange(256)
        elif edit == 1:
            del data[at : at + rng.randint(1, 40)]
        elif edit == 2:
            data[at:at] = data[at : at + rng.randint(1, 200)]
        else:
            data[at:at] = rng.choice(
                [b"&a ", b"*a", b"!!python/object:os.system ", b"{", b"]", b"\t", b"%YAML"]
            )
    return bytes(data)


def test_a_mutation_fuzzer_over_the_shipped_experiments_finds_no_crash(tmp_path):
    rng = random.Random(20261127)
    outcomes = {"ok": 0, "refused": 0}
    for round_ in range(1500):
        source = rng.choice(SHIPPED)
        path = tmp_path / f"{round_ % 10}.yaml"  # next to nothing: relative paths resolve nowhere
        path.write_bytes(mutate(source.read_bytes(), rng))
        outcomes[outcome(path)] += 1
    assert outcomes["refused"] > 500  # the fuzzer does break things, and each is refused cleanly


@pytest.mark.parametrize("seed", range(8))
def test_the_command_answers_broken_files_with_one_line_and_exit_code_2(tmp_path, seed):
    rng = random.Random(seed)
    data = mutate(rng.choice(SHIPPED).read_bytes(), rng)
    while True:  # a mutation the loader refuses
        path = tmp_path / "broken.yaml"
        path.write_bytes(data)
        if outcome(path) == "refused":
            break
        data = mutate(data, rng)
    result = gameday("validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert all(line.startswith("gameday: error: ") for line in result.stderr.splitlines()), result.stderr

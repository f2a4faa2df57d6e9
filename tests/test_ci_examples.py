"""The CI examples under experiments/ci/: valid YAML, and every gameday command in them is one
the command line accepts, on files that exist (no CI system runs here: this is what is checked)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from chaoslib_ext.cli import build_parser

EXAMPLES = sorted((REPO / "experiments" / "ci").glob("*.yml"))


def commands(document: dict) -> list[str]:
    """Every line of every `run:` (GitHub) or `script:` (GitLab) that calls gameday."""
    found = []
    for job in document.get("jobs", {}).values():
        for step in job.get("steps", []):
            found += step.get("run", "").splitlines()
    for job in document.values():
        if isinstance(job, dict) and "script" in job:
            found += job["script"]
    return [line.strip() for line in found if line.strip().startswith("gameday ")]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_gameday_command_parses_and_names_existing_files(example: Path):
    document = yaml.safe_load(example.read_text())
    found = commands(document)
    assert found, "no gameday command found"
    parser = build_parser()
    for line in found:
        args = parser.parse_args(shlex.split(line)[1:])  # exits 2 (failing the test) if it would not parse
        files = getattr(args, "file", None) or getattr(args, "files", [None])[0]
        assert (REPO / files).is_file(), f"{example.name}: {line}: no {files}"
        if getattr(args, "max_regression", None):
            from chaoslib_ext.history.compare import parse_bounds

            parse_bounds(args.max_regression)


def test_both_ci_systems_have_an_example():
    assert {p.name for p in EXAMPLES} == {"github-actions.yml", "gitlab-ci.yml"}
    github = yaml.safe_load((REPO / "experiments" / "ci" / "github-actions.yml").read_text())
    assert set(github["jobs"]) == {"local", "kubernetes"}  # a plain job and a kind cluster job
    gitlab = yaml.safe_load((REPO / "experiments" / "ci" / "gitlab-ci.yml").read_text())
    assert gitlab["resilience-gate"]["artifacts"]["reports"]["junit"] == "reports/junit.xml"

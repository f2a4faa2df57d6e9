"""report: the canonical JSON document and what is rendered from it, written atomically."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from chaoslib_ext.engine.run import RunResult
from chaoslib_ext.report.document import build_report
from chaoslib_ext.report.junit import render_junit
from chaoslib_ext.report.markdown import render_markdown
from chaoslib_ext.spec.schema import load_schema
from chaoslib_ext.state.trust import RunDirectory

FILE_NAMES = {"json": "report.json", "markdown": "report.md", "junit": "junit.xml"}


def write_reports(
    run: RunResult, run_dir: RunDirectory, amend: Callable[[dict[str, Any]], None] | None = None
) -> tuple[dict[str, Any], list[Path]]:
    """Build the report, let `amend` add to it (the regression gate, notifications), validate it
    and write every requested format; report.json is always written, first."""
    mask = run.plan.experiment.secrets.mask_data
    report = mask(build_report(run))  # before any escaping
    if amend is not None:
        amend(report)
        report = mask(report)
        jsonschema.validate(report, load_schema("report"))
    renderers = {
        "json": lambda: json.dumps(report, indent=2) + "\n",
        "markdown": lambda: render_markdown(report),
        "junit": lambda: render_junit(report),
    }
    formats = ["json", *(f for f in run.plan.experiment.report_formats if f != "json")]
    written = []
    for name in formats:
        written.append(run_dir.write(FILE_NAMES[name], renderers[name]()))
    return report, written

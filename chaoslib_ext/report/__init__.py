"""report: the canonical JSON document and what is rendered from it, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chaoslib_ext.engine.run import RunResult
from chaoslib_ext.report.document import build_report
from chaoslib_ext.report.junit import render_junit
from chaoslib_ext.report.markdown import render_markdown
from chaoslib_ext.state.trust import RunDirectory

FILE_NAMES = {"json": "report.json", "markdown": "report.md", "junit": "junit.xml"}


def write_reports(run: RunResult, run_dir: RunDirectory) -> tuple[dict[str, Any], list[Path]]:
    """Build the report and write every requested format; report.json is always written."""
    report = run.plan.experiment.secrets.mask_data(build_report(run))  # before any escaping
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

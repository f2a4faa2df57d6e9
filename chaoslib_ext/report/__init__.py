"""report: the canonical JSON document and what is rendered from it, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..engine import RunResult
from .document import build_report
from .junit import render_junit
from .markdown import render_markdown

FILE_NAMES = {"json": "report.json", "markdown": "report.md", "junit": "junit.xml"}


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it: never half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_reports(run: RunResult) -> tuple[dict[str, Any], list[Path]]:
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
        path = run.report_dir / FILE_NAMES[name]
        write_atomically(path, renderers[name]())
        written.append(path)
    return report, written

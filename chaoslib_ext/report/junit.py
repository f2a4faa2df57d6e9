"""junit.xml: one test case per objective per judged phase, so CI shows failures by name."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any


def render_junit(report: dict[str, Any]) -> str:
    suite_name = report["experiment"]["title"]
    prefix = "gameday." + re.sub(r"[^a-z0-9]+", "_", suite_name.lower()).strip("_")
    cases: list[tuple[str, str, str | None, str | None]] = []  # classname, name, failure, error
    for when in ("before", "after"):
        for probe in report["steady_state"][when]:
            cases.append(
                (
                    f"{prefix}.steady_state",
                    f"{when}: {probe['name']}",
                    None if probe["ok"] else probe["detail"],
                    None,
                )
            )
    objectives = [o for phase in report["phases"] for o in phase["objectives"]]
    if report["recovery"]["objective"]:
        objectives.append(report["recovery"]["objective"])
    for o in objectives:
        cases.append((f"{prefix}.{o['phase']}", o["label"], None if o["held"] else o["detail"], None))
    if report["verdict"] in ("aborted", "not-tested"):
        cases.append((prefix, "run", None, "; ".join(report["reasons"]) or report["status"]))
    suite = ET.Element(
        "testsuite",
        {
            "name": suite_name,
            "tests": str(len(cases)),
            "failures": str(sum(1 for c in cases if c[2] is not None)),
            "errors": str(sum(1 for c in cases if c[3] is not None)),
            "time": f"{report['duration_s']:.3f}",
            "timestamp": report["started_at"],
        },
    )
    for classname, name, failure, error in cases:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": name})
        if failure is not None:
            ET.SubElement(case, "failure", {"message": failure, "type": "SLOViolation"}).text = failure
        if error is not None:
            ET.SubElement(case, "error", {"message": error, "type": report["status"]}).text = error
    root = ET.Element(
        "testsuites",
        {
            "name": "gameday",
            "tests": suite.get("tests", "0"),
            "failures": suite.get("failures", "0"),
            "errors": suite.get("errors", "0"),
        },
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

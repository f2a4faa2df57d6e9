"""junit.xml: one test case per objective per judged phase, so CI shows failures by name."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any


def render_junit(report: dict[str, Any]) -> str:
    return junit_document([junit_testsuite(report)])


def junit_testsuite(report: dict[str, Any]) -> ET.Element:
    """One experiment's run as a <testsuite>: its steady-state probes and objectives as cases."""
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
    regression = report.get("regression")
    if regression is not None and regression["baseline"] is not None:
        found = "; ".join(regression["regressions"]) or None
        cases.append((f"{prefix}.regression", f"no regression against {regression['baseline']}", found, None))
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
    return suite


def junit_document(suites: list[ET.Element]) -> str:
    """<testsuites> around the given suites, with their totals."""

    def total(key: str) -> str:
        return str(sum(int(suite.get(key, "0")) for suite in suites))

    root = ET.Element(
        "testsuites",
        {
            "name": "gameday",
            "tests": total("tests"),
            "failures": total("failures"),
            "errors": total("errors"),
        },
    )
    root.extend(suites)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

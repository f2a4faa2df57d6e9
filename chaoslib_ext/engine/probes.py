"""Steady-state probes: an HTTP check of our own, and chaostoolkit probes run by chaostoolkit-lib."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from chaoslib_ext.spec.model import ActivityProbe, HttpProbe, Probe

MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class ProbeResult:
    name: str
    kind: str
    ok: bool
    detail: str
    seconds: float


def run_probe(probe: Probe) -> ProbeResult:
    """Run one probe; any failure, including an exception in the probe itself, is a failed result."""
    started = time.monotonic()
    try:
        ok, detail = _http(probe) if isinstance(probe, HttpProbe) else _activity(probe)
    except Exception as error:  # a probe must never take the run down with it
        ok, detail = False, f"probe raised {type(error).__name__}: {error}"
    return ProbeResult(probe.name, probe.kind, ok, detail[:500], time.monotonic() - started)


def _http(probe: HttpProbe) -> tuple[bool, str]:
    # an IRI (non-ASCII, spaces) as the URI a browser would send; what is already escaped stays
    url = urllib.parse.quote(probe.url, safe=":/?#[]@!$&'()*+,;=%")
    request = urllib.request.Request(url, method=probe.method)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=probe.timeout) as response:
            status, body = response.status, response.read(MAX_BODY_BYTES)
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read(MAX_BODY_BYTES)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return False, f"request failed: {reason}"
    elapsed = time.monotonic() - started
    text = body.decode("utf-8", errors="replace")
    if status != probe.status:
        return False, f"status {status}, expected {probe.status}"
    if probe.body is not None and not re.search(probe.body, text):
        return False, f"body does not match /{probe.body}/"
    if probe.within is not None and elapsed > probe.within:
        return False, f"answered in {elapsed * 1000:.0f}ms, more than {probe.within * 1000:.0f}ms"
    return True, f"status {status} in {elapsed * 1000:.0f}ms"


def _activity(probe: ActivityProbe) -> tuple[bool, str]:
    from chaoslib.activity import run_activity
    from chaoslib.exceptions import ActivityFailed
    from chaoslib.hypothesis import within_tolerance

    activity: dict[str, Any] = probe.activity
    try:
        value = run_activity(activity, {}, {})
    except ActivityFailed as error:
        return False, f"activity failed: {error}"
    if "tolerance" not in activity:
        return True, f"returned {value!r}"
    if within_tolerance(activity["tolerance"], value, {}, {}):
        return True, f"returned {value!r}, within tolerance"
    return False, f"returned {value!r}, outside tolerance {activity['tolerance']!r}"

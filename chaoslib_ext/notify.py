"""Webhook notifications of a verdict (an experiment's or a suite's): Slack-compatible or plain JSON.

A notification never changes a verdict: each one is tried (with retries and backoff), and what
came of it is returned for the report. Secrets are masked in the body; a webhook's URL, whose
path is usually its secret, appears in reports only as its scheme and host.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoslib_ext import __version__
from chaoslib_ext.units import parse_duration

DEFAULT_ON = ("violated", "regressed", "aborted")
BACKOFF_SECONDS = 0.5  # then 1, 2, ... between attempts
RETRIED_STATUSES = {408, 425, 429}  # and every 5xx
EMOJI = {
    "held": ":white_check_mark:",
    "violated": ":x:",
    "aborted": ":warning:",
    "not-tested": ":grey_question:",
}


@dataclass(frozen=True)
class Notification:
    """Where to tell whom, in which shape, and on which verdicts."""

    webhook: str
    format: str = "json"  # json or slack
    on: tuple[str, ...] = DEFAULT_ON
    timeout: float = 5.0
    retries: int = 3

    def wanted(self, verdict: str) -> bool:
        return "always" in self.on or verdict in self.on


def notifications(items: list[dict[str, Any]]) -> tuple[Notification, ...]:
    """The `notify:` list of a schema-valid document (an experiment's or a suite's)."""
    return tuple(
        Notification(
            webhook=item["webhook"],
            format=item.get("format", "json"),
            on=tuple(item.get("on", DEFAULT_ON)),
            timeout=parse_duration(item.get("timeout", 5)),
            retries=int(item.get("retries", 3)),
        )
        for item in items
    )


def summary_of(
    kind: str, title: str, document: dict[str, Any], slis: dict[str, str], report: Path, **more: Any
) -> dict[str, Any]:
    """What a notification says of a run or a day (`document`, its report): kind, title, run id,
    verdict, exit code, reasons, key SLIs by name and where the report is."""
    essentials = {key: document[key] for key in ("run_id", "verdict", "exit_code", "reasons")}
    return {"kind": kind, "title": title, **essentials, "slis": slis, **more, "report": str(report)}


def message(summary: dict[str, Any]) -> dict[str, Any]:
    """The generic JSON body: kind (experiment or suite), title, verdict, exit code, reasons, key
    SLIs and where the report is."""
    return {"gameday": __version__, **summary}


def slack_message(summary: dict[str, Any]) -> dict[str, Any]:
    """Slack's incoming-webhook body: a text fallback and one section per part."""
    verdict = summary["verdict"]
    head = f"{EMOJI.get(verdict, '')} *{verdict.upper()}*: {summary['title']}"
    head += f" ({summary['kind']}, exit code {summary['exit_code']})"
    lines = [f"• {reason}" for reason in summary["reasons"][:5]]
    lines += [f"• {name}: {text}" for name, text in summary.get("slis", {}).items()]
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    text = "\n".join([head, *lines])
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]}


def send_all(
    wanted: tuple[Notification, ...],
    summary: dict[str, Any],
    mask: Callable[[str], str],
    post: Callable[[str, bytes, float], int] | None = None,
) -> list[dict[str, Any]]:
    """Send each notification the verdict calls for; what came of each, for the report."""
    results = []
    for notification in wanted:
        if not notification.wanted(summary["verdict"]):
            continue
        body = slack_message(summary) if notification.format == "slack" else message(summary)
        data = mask(json.dumps(body)).encode()
        results.append(
            {
                "webhook": shown(mask(notification.webhook)),
                "format": notification.format,
                **_deliver(notification, data, mask, post or _post),
            }
        )
    return results


def _deliver(
    notification: Notification,
    data: bytes,
    mask: Callable[[str], str],
    post: Callable[[str, bytes, float], int],
) -> dict[str, Any]:
    problem = ""
    for attempt in range(1, notification.retries + 2):
        try:
            status = post(notification.webhook, data, notification.timeout)
        except ValueError as error:  # not a URL urllib can send to: no retry makes it one
            return {"sent": False, "attempts": attempt, "problem": mask(f"{type(error).__name__}: {error}")}
        except Exception as error:
            problem = mask(f"{type(error).__name__}: {error}")
        else:
            if 200 <= status < 300:
                return {"sent": True, "attempts": attempt, "problem": None}
            problem = f"HTTP {status}"
            if status < 500 and status not in RETRIED_STATUSES:
                return {"sent": False, "attempts": attempt, "problem": problem}
        if attempt <= notification.retries:
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
    return {"sent": False, "attempts": notification.retries + 1, "problem": problem}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET without its body: it counts as not sent."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, data: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"gameday/{__version__}"},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def shown(url: str) -> str:
    """A webhook as reports show it: its scheme and host only (the path is often its secret)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/…"

"""Webhook notifications against a real HTTP receiver on 127.0.0.1: what it receives, retries with
backoff, failures that are reported and change nothing else."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chaoslib_ext import notify
from chaoslib_ext.masking import Secrets
from chaoslib_ext.notify import Notification, send_all

SECRET = "hook-token-5f2e9c"
SUMMARY = {
    "kind": "experiment",
    "title": "Checkout keeps its SLO",
    "run_id": "20261203-100000-checkout-ab12",
    "verdict": "violated",
    "exit_code": 1,
    "reasons": [f"fault: availability 97.1% < 99.5% (token {SECRET} leaked into a message)"],
    "slis": {"fault": "availability 97.1%, p95 310ms"},
    "report": "reports/20261203-100000-checkout-ab12/report.json",
}


class Receiver:
    """Answers each POST with the next status of `statuses` (then 200), keeping what it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[str, dict, str]] = []  # path, body, content type
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((self.path, json.loads(body), self.headers["Content-Type"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver([])
    yield server
    server.server.shutdown()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "BACKOFF_SECONDS", 0.01)


def mask(text: str) -> str:
    return Secrets({"hook": SECRET}).mask(text)


def test_the_json_body_carries_the_verdict_and_masks_secrets(receiver):
    [result] = send_all((Notification(receiver.url, on=("violated",)),), SUMMARY, mask)
    assert result == {
        "webhook": result["webhook"],
        "format": "json",
        "sent": True,
        "attempts": 1,
        "problem": None,
    }
    assert result["webhook"] == f"http://127.0.0.1:{receiver.server.server_port}/…"  # its path is its secret
    [(path, body, content_type)] = receiver.received
    assert path == f"/hooks/{SECRET}" and content_type == "application/json"
    assert body["verdict"] == "violated" and body["exit_code"] == 1 and body["title"] == SUMMARY["title"]
    assert body["slis"] == SUMMARY["slis"] and body["report"] == SUMMARY["report"] and "gameday" in body
    assert SECRET not in json.dumps(body) and "***" in body["reasons"][0]


def test_the_slack_body_is_an_incoming_webhook_message(receiver):
    send_all((Notification(receiver.url, format="slack", on=("always",)),), SUMMARY, mask)
    [(_, body, _)] = receiver.received
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(":x: *VIOLATED*: Checkout keeps its SLO (experiment, exit code 1)")
    assert body["blocks"][0]["type"] == "section" and body["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "• fault: availability 97.1%, p95 310ms" in body["text"]


def test_only_the_verdicts_asked_for_are_sent(receiver):
    assert send_all((Notification(receiver.url, on=("held",)),), SUMMARY, mask) == []
    assert (
        send_all((Notification(receiver.url),), {**SUMMARY, "verdict": "held"}, mask) == []
    )  # default: violated, aborted
    assert receiver.received == []


def test_a_server_error_is_retried_until_it_is_received(receiver):
    receiver.statuses[:] = [503, 500]
    [result] = send_all((Notification(receiver.url, retries=3),), SUMMARY, mask)
    assert result["sent"] is True and result["attempts"] == 3 and len(receiver.received) == 3


def test_a_client_error_is_not_retried_and_is_reported(receiver):
    receiver.statuses[:] = [404]
    [result] = send_all((Notification(receiver.url, retries=3),), SUMMARY, mask)
    assert result == {**result, "sent": False, "attempts": 1, "problem": "HTTP 404"}


def test_an_unreachable_webhook_fails_after_its_retries_without_raising(receiver):
    receiver.server.shutdown()
    receiver.server.server_close()
    [result] = send_all((Notification(receiver.url, retries=2, timeout=2),), SUMMARY, mask)
    assert result["sent"] is False and result["attempts"] == 3
    assert "Connection refused" in result["problem"] or "URLError" in result["problem"]
    assert SECRET not in result["problem"]


def test_a_garbled_answer_or_a_redirect_is_a_failed_notification_not_a_crash(receiver):
    import socket
    import threading

    garbler = socket.create_server(("127.0.0.1", 0))

    def answer_garbage() -> None:
        for _ in range(2):
            connection, _ = garbler.accept()
            connection.recv(65536)
            connection.sendall(b"garbage\r\n\r\n")
            connection.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    url = f"http://127.0.0.1:{garbler.getsockname()[1]}/hook"
    [result] = send_all((Notification(url, retries=1),), SUMMARY, mask)
    assert result["sent"] is False and result["attempts"] == 2 and "BadStatusLine" in result["problem"]
    receiver.statuses[:] = [302]
    [moved] = send_all((Notification(receiver.url, retries=3),), SUMMARY, mask)
    assert moved == {**moved, "sent": False, "attempts": 1, "problem": "HTTP 302"}
    garbler.close()

"""Shared HTTP server plumbing for the embedded demo system (standard library only)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 handler that never logs and always sends Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "gameday-demo/0.1"
    # Headers and body are written separately; without TCP_NODELAY, Nagle plus delayed ACKs
    # would add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Suppress the default per-request stderr logging."""

    def send_body(
        self, status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        """Send a complete response with an explicit Content-Length."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class DemoServer(ThreadingHTTPServer):
    """Threading HTTP server with daemon threads, fast rebinding and quiet client errors."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that vanish mid-request; report anything else as usual."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add the --host and --port options shared by every demo server."""
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")


def serve_until_signalled(server: DemoServer) -> int:
    """Serve in a background thread until SIGTERM or SIGINT, then shut down; return 0."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="serve", daemon=True
    )
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

"""Demo backend replica: GET /work simulates a little work and says who answered."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from urllib.parse import urlsplit

from chaoslib_ext.demo.httpserver import (
    DemoServer,
    QuietHandler,
    add_common_args,
    serve_until_signalled,
)


class BackendHandler(QuietHandler):
    """Serves /work and /healthz for one replica."""

    replica: str = "backend"
    work_seconds: float = 0.002

    def do_GET(self) -> None:
        """Route GET requests."""
        path = urlsplit(self.path).path
        if path == "/work":
            if self.work_seconds > 0:
                time.sleep(self.work_seconds)
            body = json.dumps({"replica": self.replica, "pid": os.getpid()})
            self.send_body(200, body, "application/json")
        elif path == "/healthz":
            self.send_body(200, "ok")
        else:
            self.send_body(404, "not found")


def build_server(host: str, port: int, name: str, work_ms: float) -> DemoServer:
    """Bind a backend server (not yet serving)."""
    handler = type(
        "BoundBackendHandler",
        (BackendHandler,),
        {"replica": name, "work_seconds": max(work_ms, 0.0) / 1000.0},
    )
    return DemoServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("--name", default=None, help="replica name (default: backend-PORT)")
    parser.add_argument("--work-ms", type=float, default=2.0, help="simulated work per /work")
    args = parser.parse_args(argv)
    name = args.name or f"backend-{args.port}"
    server = build_server(args.host, args.port, name, args.work_ms)
    return serve_until_signalled(server)


if __name__ == "__main__":
    sys.exit(main())

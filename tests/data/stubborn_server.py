"""An HTTP server that ignores SIGTERM (only SIGKILL stops it): a service slow to stop."""

import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


signal.signal(signal.SIGTERM, signal.SIG_IGN)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()

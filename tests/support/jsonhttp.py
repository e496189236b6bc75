"""What the fake HTTP servers of the tests share: a quiet JSON request handler and a server on 127.0.0.1 in
a daemon thread (a context manager). Each fake keeps only its routes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class JsonHandler(BaseHTTPRequestHandler):
    """Calls `self.handle_request(method, path, query, body)` for GET/POST/PUT/PATCH/DELETE."""

    def log_message(self, *args):  # quiet
        pass

    def reply(self, status: int, body, content_type: str = "application/json", headers=()) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers:  # (name, value) pairs: a header may repeat (Kubernetes' Warning)
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.handle_request(method, url.path, query, self.read_json())

    def handle_request(self, method: str, path: str, query: dict, body: dict) -> None:
        self.reply(404, {"error": f"not faked: {method} {path}"})

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")


class Served:
    """`handler` served on 127.0.0.1 (a free port) while the `with` block runs; `url` is its base URL."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

"""A minimal OCI distribution registry (in memory, plain HTTP on 127.0.0.1) for push tests.

Enough of the distribution API for `podman push`: blob existence, chunked/monolithic uploads (cross-repo
mounts answered as plain uploads), manifests by tag and digest, with Docker-Content-Digest headers.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Registry:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}  # (repo, tag or digest) -> (type, body)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Registry:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(data)
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, code: int, headers: dict[str, str] | None = None, body: bytes = b"",
                       head: bool = False) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.end_headers()
                if body and not head:
                    self.wfile.write(body)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                path = url.path
                if path in ("/v2", "/v2/"):
                    return self._reply(200, body=b"{}")
                if m := re.fullmatch(r"/v2/(.+)/blobs/uploads/?", path):
                    if method == "POST":
                        upload = uuid.uuid4().hex
                        registry.uploads[upload] = bytearray(self._body())
                        return self._reply(202, {"Location": f"/v2/{m[1]}/blobs/uploads/{upload}",
                                                 "Docker-Upload-UUID": upload, "Range": "0-0"})
                if m := re.fullmatch(r"/v2/(.+)/blobs/uploads/([0-9a-f]+)", path):
                    data = registry.uploads[m[2]]
                    data += self._body()
                    if method == "PATCH":
                        return self._reply(202, {"Location": path, "Docker-Upload-UUID": m[2],
                                                 "Range": f"0-{max(len(data) - 1, 0)}"})
                    if method == "PUT":
                        digest = query["digest"][0]
                        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                            return self._reply(400, body=b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                        registry.blobs[digest] = bytes(registry.uploads.pop(m[2]))
                        return self._reply(201, {"Location": f"/v2/{m[1]}/blobs/{digest}",
                                                 "Docker-Content-Digest": digest})
                if m := re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})", path):
                    blob = registry.blobs.get(m[2])
                    if blob is None:
                        return self._reply(404, head=method == "HEAD")
                    return self._reply(200, {"Docker-Content-Digest": m[2],
                                             "Content-Type": "application/octet-stream"}, blob, method == "HEAD")
                if m := re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", path):
                    if method == "PUT":
                        body = self._body()
                        digest = "sha256:" + hashlib.sha256(body).hexdigest()
                        kind = self.headers.get("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                        registry.manifests[(m[1], m[2])] = registry.manifests[(m[1], digest)] = (kind, body)
                        return self._reply(201, {"Location": f"/v2/{m[1]}/manifests/{digest}",
                                                 "Docker-Content-Digest": digest})
                    found = registry.manifests.get((m[1], m[2]))
                    if found is None:
                        return self._reply(404, head=method == "HEAD")
                    kind, body = found
                    return self._reply(200, {"Content-Type": kind,
                                             "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()},
                                       body, method == "HEAD")
                return self._reply(404, head=method == "HEAD")

            def do_GET(self) -> None:
                self._route("GET")

            def do_HEAD(self) -> None:
                self._route("HEAD")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PATCH(self) -> None:
                self._route("PATCH")

            def do_PUT(self) -> None:
                self._route("PUT")

        return Handler

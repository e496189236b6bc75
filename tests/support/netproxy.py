"""Enterprise-network stand-ins on 127.0.0.1: a TLS terminator and a counting forward proxy.

- `tls_terminator(backend_port, ca)`: serves HTTPS with a certificate from a private test CA and pipes each
  connection to a plain-HTTP backend (a real mlflow server, a moto S3 endpoint, a git HTTP server, the fake
  KFP API), the way an ingress with an internal certificate fronts a service.
- `forward_proxy()`: an HTTP CONNECT proxy that counts the tunnels it opened per target, so a test can prove
  that a client honoured HTTPS_PROXY (and NO_PROXY).
Both run on a private event loop thread and stop when the context manager exits.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.tls import LocalCA


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - closing a broken transport
            pass


async def _splice(a: tuple, b: tuple) -> None:
    await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))


@contextmanager
def _serving(start) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    ready: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(start())
        ready["server"] = server
        ready["port"] = server.sockets[0].getsockname()[1]
        ready["event"].set()
        loop.run_forever()

    ready["event"] = threading.Event()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready["event"].wait(10)
    try:
        yield ready["port"]
    finally:
        async def stop() -> None:
            ready["server"].close()
            for task in asyncio.all_tasks(loop):
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def tls_terminator(backend_port: int, ca: LocalCA) -> Iterator[str]:
    """HTTPS on 127.0.0.1 (certificate from `ca`) in front of http://127.0.0.1:backend_port; yields the base URL."""

    async def handle(reader, writer) -> None:
        try:
            backend = await asyncio.open_connection("127.0.0.1", backend_port)
        except OSError:
            writer.close()
            return
        await _splice((reader, writer), backend)

    async def start():
        return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ca.server_context())

    with _serving(start) as port:
        yield f"https://localhost:{port}"


@dataclass
class ForwardProxy:
    url: str = ""
    tunnels: Counter = field(default_factory=Counter)  # "host:port" -> CONNECTs served

    def through(self, url: str) -> int:
        """Tunnels opened to the host:port of `url`."""
        from urllib.parse import urlparse

        parsed = urlparse(url)
        return self.tunnels[f"{parsed.hostname}:{parsed.port}"]


@contextmanager
def forward_proxy() -> Iterator[ForwardProxy]:
    """An HTTP CONNECT proxy on 127.0.0.1 that only tunnels to 127.0.0.1/localhost and counts each tunnel."""
    proxy = ForwardProxy()

    async def handle(reader, writer) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host not in ("127.0.0.1", "localhost"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        try:
            upstream = await asyncio.open_connection("127.0.0.1", int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        proxy.tunnels[f"{host}:{port}"] += 1
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _splice((reader, writer), upstream)

    async def start():
        return await asyncio.start_server(handle, "127.0.0.1", 0)

    with _serving(start) as port:
        proxy.url = f"http://127.0.0.1:{port}"
        yield proxy

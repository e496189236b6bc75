"""A pass-through in front of a real server that lists its models without their context length, as gateways
that only relay ids do (`max_model_len`, llama.cpp's `meta` removed from GET /v1/models); it records each
chat request it forwards, so a test can read what the client sent. Everything else is the server's own."""

from __future__ import annotations

import threading

import httpx

from tests.support.jsonhttp import JsonHandler, Served


class ContextHidingGateway:
    """`with ContextHidingGateway(server.base_url) as gw:` then point a client at `gw.base_url`."""

    def __init__(self, backend_v1: str):
        self.backend = backend_v1.removesuffix("/v1")
        self.chats: list[dict] = []
        self._lock = threading.Lock()
        gateway = self

        class Handler(JsonHandler):
            def handle_request(self, method: str, path: str, query: dict, body: dict) -> None:
                if method == "GET":
                    reply = httpx.get(gateway.backend + path, timeout=60)
                    listed = reply.json()
                    for entry in listed.get("data", []) if isinstance(listed, dict) else []:
                        entry.pop("max_model_len", None)
                        entry.pop("meta", None)
                    return self.reply(reply.status_code, listed)
                with gateway._lock:
                    gateway.chats.append(body)
                reply = httpx.post(gateway.backend + path, json=body, timeout=300)
                self.reply(reply.status_code, reply.text)

        self._served = Served(Handler)
        self.base_url = self._served.url + "/v1"

    def __enter__(self) -> ContextHidingGateway:
        self._served.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._served.__exit__(*exc)

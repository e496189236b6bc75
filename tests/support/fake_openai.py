"""A deterministic fake OpenAI-compatible teacher, for testing client behaviour (concurrency, faults, parsing).

`FakeOpenAIServer` is a real HTTP server on 127.0.0.1 (a free port) running in a background thread:
POST /v1/chat/completions (OpenAI response shape, with usage) and GET /v1/models. Its replies are
derived from a hash of the request, so the same request always gets the same answer; with a
`response_format` JSON schema (or a schema embedded by the client's prompting fallback) the reply is a
deterministic instance of that schema. It is not a model: use it where the point is what the client
does, never to judge data quality.

A `FaultPlan` injects faults deterministically (429, 5xx, slow replies, dropped connections, broken
JSON...). The replies, the fault plan and the schema instances live in tests.support.fake_openai_replies;
they are importable from here too, so a test needs one import.

    with FakeOpenAIServer(latency_s=0.2, faults=FaultPlan(rates={"rate_limit": 0.1})) as server:
        client = make_client(ModelSpec(server.base_url, model=server.model))
        ...
        assert server.max_in_flight <= 64
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.fake_openai_replies import (
    CONTEXT_DIALECTS,
    FAULT_KINDS,
    FaultPlan,
    Reply,
    context_error_reply,
    count_tokens,
    default_responder,
    digest,
    error_reply,
    lognormal_latency,
    request_schema,
    schema_instance,
    schema_violation,
)

__all__ = [
    "CONTEXT_DIALECTS",
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "FaultPlan",
    "Reply",
    "count_tokens",
    "default_responder",
    "lognormal_latency",
    "request_schema",
    "schema_instance",
    "schema_violation",
]


class FakeOpenAIServer:
    """A deterministic fake teacher for testing client behaviour (concurrency, faults, parsing).

    Counters (thread-safe): `total_requests` (chat completions received), `status_counts` (HTTP status
    -> count; "dropped" for closed connections), `faults_injected`, `in_flight`, `max_in_flight`,
    `models_requests`, and `requests` (every chat request body received, in arrival order) with
    `arrival_times`.
    """

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], str | dict[str, Any] | Reply] | None = None,
        *,
        latency_s: float = 0.0,
        model: str = "fake-teacher",
        api_key: str | None = None,
        supports_response_format: bool = True,
        faults: FaultPlan | None = None,
        max_context_tokens: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,  # 0: a free port
        slots: int = 0,  # > 0: at most this many requests served at once, the rest wait (a replica's capacity)
        # per-request latency (overrides latency_s)
        latency_fn: Callable[[dict[str, Any]], float] | None = None,
        ignores_response_format: bool = False,
        context_dialect: str = "openai",
        report_context: bool = False,
    ):
        self.responder = responder or default_responder
        self.latency_s = latency_s
        self.model = model
        self.api_key = api_key
        self.supports_response_format = supports_response_format
        self.faults = faults or FaultPlan()
        self.max_context_tokens = max_context_tokens
        # Dialects of real servers: transformers serve answers 200 and ignores response_format; vLLM,
        # llama.cpp and TGI word context errors their own way (and vLLM counts max_tokens in, llama.cpp
        # stops silently at the context's end); GET /models reports the context when report_context.
        self.ignores_response_format = ignores_response_format
        if context_dialect not in CONTEXT_DIALECTS:
            raise ValueError(f"context_dialect must be one of {CONTEXT_DIALECTS}")
        self.context_dialect = context_dialect
        self.report_context = report_context
        self._ssl_context = ssl_context
        self._port = port
        self._slots = threading.BoundedSemaphore(slots) if slots > 0 else None
        self.latency_fn = latency_fn
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._attempts: Counter[str] = Counter()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset_counters()

    # lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _HTTPServer(("127.0.0.1", self._port), handler)
        if self._ssl_context is not None:
            self._httpd.socket = self._ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def reset_counters(self) -> None:
        with self._lock:
            self.total_requests = 0
            self.models_requests = 0
            self.status_counts: Counter[int | str] = Counter()
            self.faults_injected: Counter[str] = Counter()
            self.in_flight = 0
            self.max_in_flight = 0
            self.requests: list[dict[str, Any]] = []
            self.arrival_times: list[float] = []  # time.monotonic() of each entry in `requests`

    # request handling (called from handler threads) -----------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        return self.api_key is None or header == f"Bearer {self.api_key}"

    def _enter(self, request: dict[str, Any]) -> tuple[int, int]:
        # A re-ask (another seed or temperature, a capped max_tokens) is another attempt of the same request.
        # (labpipe's client re-asks with seed + k * 7919, so the seed is taken modulo 7919.)
        same = {k: v for k, v in request.items() if k not in ("seed", "temperature", "max_tokens")}
        seed = request.get("seed") if isinstance(request.get("seed"), int) else 0
        key = digest([same, seed % 7919])
        with self._lock:
            arrival = self.total_requests
            self.total_requests += 1
            self.requests.append(request)
            self.arrival_times.append(time.monotonic())
            attempt = self._attempts[key]
            self._attempts[key] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return arrival, attempt

    def _leave(self, status: int | str, fault: str | None) -> None:
        with self._lock:
            self.in_flight -= 1
            self.status_counts[status] += 1
            if fault:
                self.faults_injected[fault] += 1

    def context_fields(self) -> dict[str, Any]:
        if not self.report_context or self.max_context_tokens is None:
            return {}
        if self.context_dialect == "llamacpp":
            return {"meta": {"n_ctx": self.max_context_tokens, "n_ctx_train": 8192}}
        return {"max_model_len": self.max_context_tokens}

    def _context_error(self, prompt_tokens: int, max_tokens: int) -> Reply | None:
        if self.max_context_tokens is None:
            return None
        return context_error_reply(self.context_dialect, self.max_context_tokens, prompt_tokens, max_tokens)

    def _room(self, prompt_tokens: int, request: dict[str, Any]) -> int | None:
        """llama.cpp dialect: tokens left before the context's end (max_tokens counts too)."""
        if self.max_context_tokens is None or self.context_dialect != "llamacpp":
            return None
        left = self.max_context_tokens - prompt_tokens
        return min(left, int(request.get("max_tokens") or left))

    def _chat(self, request: dict[str, Any], arrival: int, attempt: int) -> tuple[Reply | None, str | None]:
        """The reply to one chat request (None: drop the connection) and the fault injected, if any."""
        if request.get("model") != self.model:
            return error_reply(
                404, f"The model `{request.get('model')}` does not exist.", "model_not_found"
            ), None
        if request.get("response_format") and not self.supports_response_format:
            return error_reply(
                400, "response_format is not supported by this server", "invalid_request_error"
            ), None
        if self.ignores_response_format:
            request = {k: v for k, v in request.items() if k != "response_format"}
        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in request.get("messages") or [])
        too_long = self._context_error(prompt_tokens, int(request.get("max_tokens") or 0))
        if too_long is not None:
            return too_long, None
        fault = self.faults.pick(request, arrival, digest(request), attempt)
        if isinstance(fault, Reply):
            return fault, "hook"
        delay = self.latency_fn(request) if self.latency_fn is not None else self.latency_s
        if self._slots is not None:
            with self._slots:
                self._stop.wait(delay)
        else:
            self._stop.wait(delay)
        if fault == "rate_limit":
            headers = (
                {} if self.faults.retry_after_s is None else {"Retry-After": f"{self.faults.retry_after_s:g}"}
            )
            return Reply(
                429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}, headers
            ), fault
        if fault == "server_error":
            return error_reply(500, "internal server error", "server_error"), fault
        if fault == "unavailable":
            return error_reply(503, "service unavailable", "server_error"), fault
        if fault == "overloaded":
            return error_reply(503, "The server is overloaded, please try again later", "overloaded"), fault
        if fault == "bad_request":
            return error_reply(
                400, "invalid value for 'top_k': must be positive", "invalid_request_error"
            ), fault
        if fault == "drop":
            return None, fault
        if fault == "slow":
            self._stop.wait(self.faults.slow_s)

        content = self.responder(request)
        if isinstance(content, Reply):
            return content, fault
        finish = "stop"
        schema, _ = request_schema(request)
        if fault == "truncated_json":
            full = json.dumps(content if not isinstance(content, str) else {"text": content})
            content, finish = full[: max(1, len(full) // 2)], "length"
        elif fault == "non_json":
            content = "I am sorry, but I cannot answer that in the requested format."
        elif fault == "schema_violation":  # differs with the seed, as a sampling server's replies do
            content = schema_violation(schema)
            if isinstance(content, dict) and "__unexpected__" in content:
                content = {"__unexpected__": request.get("seed", 1)}
        if not isinstance(content, str):
            content = json.dumps(content)
        room = self._room(prompt_tokens, request)
        if room is not None and count_tokens(content) > room:  # llama.cpp: stops at the context's end
            content, finish = " ".join(content.split(" ")[: max(room, 0)]), "length"
        body = {
            "id": f"chatcmpl-{digest([request, attempt])[:24]}",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": count_tokens(content),
                "total_tokens": prompt_tokens + count_tokens(content),
            },
        }
        if fault == "bad_body":
            text = json.dumps(body)
            return Reply(200, text[: len(text) // 2], {"Content-Type": "application/json"}), fault
        return Reply(200, body), fault


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # many clients connect at once; a small backlog costs 1 s SYN retries

    def handle_error(self, request, client_address) -> None:  # clients that time out close early: ignore
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    fake: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, reply: Reply) -> None:
        body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        data = body.encode()
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        if not self.fake._authorized(self.headers.get("Authorization")):
            self._send(error_reply(401, "Incorrect API key provided", "invalid_api_key"))
        elif self.path.rstrip("/") == "/v1/models":
            with self.fake._lock:
                self.fake.models_requests += 1
            self._send(
                Reply(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": self.fake.model,
                                "object": "model",
                                "owned_by": "labpipe-fake",
                                **self.fake.context_fields(),
                            }
                        ],
                    },
                )
            )
        else:
            self._send(error_reply(404, f"no route {self.path}", "not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(error_reply(404, f"no route {self.path}", "not_found"))
            return
        if not self.fake._authorized(self.headers.get("Authorization")):
            self._send(error_reply(401, "Incorrect API key provided", "invalid_api_key"))
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self._send(error_reply(400, "request body is not JSON", "invalid_request_error"))
            return
        arrival, attempt = self.fake._enter(request)
        status: int | str = "dropped"
        fault: str | None = None
        try:
            reply, fault = self.fake._chat(request, arrival, attempt)
            if reply is None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            status = reply.status
            self._send(reply)
        finally:
            self.fake._leave(status, fault)


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.support.fake_openai --latency 0.2`: serve until interrupted; prints the base URL."""
    import argparse

    parser = argparse.ArgumentParser(description="deterministic fake OpenAI-compatible teacher (for tests)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--model", default="fake-teacher")
    parser.add_argument("--api-key", default=None, help="require this bearer token (default: none)")
    parser.add_argument("--no-response-format", action="store_true", help="reject response_format with 400")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--slots", type=int, default=0, help="requests served at once (default: unlimited)")
    parser.add_argument(
        "--lognormal",
        nargs=2,
        type=float,
        metavar=("MEDIAN", "P99"),
        help="per-request latency: log-normal with this median and 99th percentile (seconds), "
        "drawn from a hash of the request (the same request always takes the same time)",
    )
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(
        latency_s=args.latency,
        model=args.model,
        api_key=args.api_key,
        supports_response_format=not args.no_response_format,
        port=args.port,
        slots=args.slots,
        latency_fn=lognormal_latency(*args.lognormal) if args.lognormal else None,
    )
    with server:
        print(server.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

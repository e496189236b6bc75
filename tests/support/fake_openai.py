"""A deterministic fake OpenAI-compatible teacher, for testing client behaviour (concurrency, faults, parsing).

`FakeOpenAIServer` is a real HTTP server on 127.0.0.1 (a free port) running in a background thread:
POST /v1/chat/completions (OpenAI response shape, with usage) and GET /v1/models. Its replies are
derived from a hash of the request, so the same request always gets the same answer; with a
`response_format` JSON schema (or a schema embedded by the client's prompting fallback) the reply is a
deterministic instance of that schema. It is not a model: use it where the point is what the client
does, never to judge data quality.

A `FaultPlan` injects faults deterministically: 429 with Retry-After, 500, 503, replies slower than the
client's timeout, dropped connections, truncated JSON, non-JSON text, schema-violating JSON and
malformed response bodies - at seeded rates keyed by request content and attempt (so the arrival order
under concurrency does not matter), for the first N requests, for the first N attempts of every request,
or from a per-request hook.

    with FakeOpenAIServer(latency_s=0.2, faults=FaultPlan(rates={"rate_limit": 0.1})) as server:
        client = make_client(ModelSpec(server.base_url, model=server.model))
        ...
        assert server.max_in_flight <= 64
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from labpipe.llm.json_extract import check_schema, schema_from_instruction

FAULT_KINDS = (
    "rate_limit",  # 429 with Retry-After
    "server_error",  # 500
    "unavailable",  # 503
    "slow",  # reply only after FaultPlan.slow_s (beyond the client's timeout)
    "drop",  # close the connection without a response
    "truncated_json",  # 200, content is JSON cut in half, finish_reason "length"
    "non_json",  # 200, content is prose (the same whatever the seed: a server that ignores it)
    "schema_violation",  # 200, content is JSON that breaks the requested schema
    "bad_body",  # 200, the HTTP body itself is cut (not parseable JSON)
    "overloaded",  # 503 "server overloaded" (as vLLM / TGI under load)
    "bad_request",  # 400 with an unrelated reason (not response_format, not context)
)
CONTEXT_DIALECTS = ("openai", "vllm", "llamacpp", "tgi")

_WORDS = (
    "the model writes a short clear answer about data training taxonomy question knowledge skill "
    "example careful step reason because first then finally result simple useful accurate detail "
    "context document summary poem river light science history number value test quick"
).split()


@dataclass
class Reply:
    """A complete HTTP reply a responder or hook may return instead of message content."""

    status: int = 200
    body: dict[str, Any] | str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FaultPlan:
    """Which requests fail, and how. All choices are deterministic given `seed`.

    rates: kind -> probability for each attempt, drawn from a hash of (seed, request body, attempt).
    first: kind -> the first N chat requests the server receives get this fault (kinds in the order
        given: {"drop": 2, "slow": 1} drops requests 0 and 1 and delays request 2).
    first_attempts: kind -> likewise for the attempts of every distinct request body.
    hook: (request_json, attempt) -> a fault kind, a Reply, or None; consulted first.
    """

    rates: dict[str, float] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)
    first_attempts: dict[str, int] = field(default_factory=dict)
    hook: Callable[[dict[str, Any], int], str | Reply | None] | None = None
    seed: int = 0
    retry_after_s: float | None = 0.05  # Retry-After sent with 429 (None: no header)
    slow_s: float = 30.0

    def __post_init__(self) -> None:
        unknown = sorted({*self.rates, *self.first, *self.first_attempts} - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")

    def pick(self, request: dict[str, Any], arrival: int, body_key: str, attempt: int) -> str | Reply | None:
        if self.hook is not None:
            chosen = self.hook(request, attempt)
            if chosen is not None:
                return chosen
        for counts, index in ((self.first, arrival), (self.first_attempts, attempt)):
            start = 0
            for kind, n in counts.items():  # in the order given
                if start <= index < start + n:
                    return kind
                start += n
        if self.rates:
            u = _uniform(f"{self.seed}:{body_key}:{attempt}")
            acc = 0.0
            for kind in FAULT_KINDS:
                acc += self.rates.get(kind, 0.0)
                if u < acc:
                    return kind
        return None


def _uniform(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def count_tokens(text: str) -> int:
    """The fake's notion of tokens: whitespace-separated words."""
    return len(text.split())


def request_schema(request: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """(schema, via_response_format): from response_format, else from a prompting-fallback instruction."""
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema"), True
    for message in reversed(request.get("messages") or []):
        content = message.get("content")
        if isinstance(content, str):
            schema = schema_from_instruction(content)
            if schema is not None:
                return schema, False
    return None, False


def default_responder(request: dict[str, Any]) -> str | dict[str, Any]:
    """Deterministic content from a hash of the messages; a schema instance when a schema was asked for.

    With the prompting fallback the instance is wrapped in prose and a code fence, as chat models do.
    """
    rng = random.Random(_digest(request.get("messages")))
    schema, via_response_format = request_schema(request)
    if schema is not None:
        value = schema_instance(schema, rng)
        if via_response_format:
            return value
        return f"Sure, here is the JSON:\n```json\n{json.dumps(value, indent=2)}\n```\nHappy to help further."
    n = min(int(request.get("max_tokens") or 64), rng.randint(8, 24))
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def schema_instance(schema: dict[str, Any], rng: random.Random, root: dict[str, Any] | None = None) -> Any:
    """A deterministic value satisfying the common JSON-schema keywords (type, enum, const, properties,
    items, min/max lengths, items and values, anyOf/oneOf, local $ref, simple patterns)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return schema_instance(target, rng, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return schema_instance(schema[key][0], rng, root)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return schema_instance(merged, rng, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {name: schema_instance(sub, rng, root) for name, sub in props.items()}
    if kind == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", 3)
        n = max(lo, min(hi, 2))
        return [schema_instance(schema.get("items", {"type": "string"}), rng, root) for _ in range(n)]
    if kind == "string":
        return _string_instance(schema, rng)
    if kind in ("integer", "number"):
        lo, hi = _bounds(schema)
        value = rng.randint(lo, hi)
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _bounds(schema: dict[str, Any]) -> tuple[int, int]:
    lo = math.ceil(schema["minimum"]) if "minimum" in schema else None
    if lo is None and "exclusiveMinimum" in schema:
        lo = math.floor(schema["exclusiveMinimum"]) + 1
    lo = 0 if lo is None else lo
    hi = math.floor(schema["maximum"]) if "maximum" in schema else None
    if hi is None and "exclusiveMaximum" in schema:
        hi = math.ceil(schema["exclusiveMaximum"]) - 1
    hi = lo + 100 if hi is None else hi
    return lo, max(lo, hi)


def _string_instance(schema: dict[str, Any], rng: random.Random) -> str:
    lo, hi = schema.get("minLength", 0), schema.get("maxLength", 80)
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))).capitalize()
    while len(text) < lo:
        text += " " + rng.choice(_WORDS)
    cut = text[:hi]
    text = cut.rstrip() if len(cut.rstrip()) >= lo else cut
    pattern = schema.get("pattern")
    if pattern and not re.search(pattern, text):
        for candidate in ("abc", "a", "A", "1", "a1", "Yes", "example"):
            if re.search(pattern, candidate) and lo <= len(candidate) <= hi:
                return candidate
    return text


def schema_violation(schema: dict[str, Any] | None) -> Any:
    """A JSON value that does not satisfy `schema`."""
    for candidate in ({"__unexpected__": 1}, [], "not the requested object", None, 0):
        if schema is None or check_schema(candidate, schema) is not None:
            return candidate
    return {"__unexpected__": 1}


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
        latency_fn: Callable[[dict[str, Any]], float] | None = None,  # per-request latency (overrides latency_s)
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
        key = _digest([same, seed % 7919])
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
        return _context_error_reply(self.context_dialect, self.max_context_tokens, prompt_tokens, max_tokens)

    def _room(self, prompt_tokens: int, request: dict[str, Any]) -> int | None:
        """llama.cpp dialect: tokens left before the context's end (max_tokens counts too)."""
        if self.max_context_tokens is None or self.context_dialect != "llamacpp":
            return None
        left = self.max_context_tokens - prompt_tokens
        return min(left, int(request.get("max_tokens") or left))

    def _chat(self, request: dict[str, Any], arrival: int, attempt: int) -> tuple[Reply | None, str | None]:
        """The reply to one chat request (None: drop the connection) and the fault injected, if any."""
        if request.get("model") != self.model:
            return _error(404, f"The model `{request.get('model')}` does not exist.", "model_not_found"), None
        if request.get("response_format") and not self.supports_response_format:
            return _error(
                400, "response_format is not supported by this server", "invalid_request_error"
            ), None
        if self.ignores_response_format:
            request = {k: v for k, v in request.items() if k != "response_format"}
        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in request.get("messages") or [])
        too_long = self._context_error(prompt_tokens, int(request.get("max_tokens") or 0))
        if too_long is not None:
            return too_long, None
        fault = self.faults.pick(request, arrival, _digest(request), attempt)
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
            return _error(500, "internal server error", "server_error"), fault
        if fault == "unavailable":
            return _error(503, "service unavailable", "server_error"), fault
        if fault == "overloaded":
            return _error(503, "The server is overloaded, please try again later", "overloaded"), fault
        if fault == "bad_request":
            return _error(400, "invalid value for 'top_k': must be positive", "invalid_request_error"), fault
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
            "id": f"chatcmpl-{_digest([request, attempt])[:24]}",
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


def lognormal_latency(median_s: float, p99_s: float) -> Callable[[dict[str, Any]], float]:
    """A deterministic long-tailed latency per request: log-normal with the given median and p99."""
    from statistics import NormalDist

    sigma = math.log(p99_s / median_s) / NormalDist().inv_cdf(0.99)
    unit = NormalDist()

    def latency(request: dict[str, Any]) -> float:
        u = min(max(_uniform(_digest(request)), 1e-9), 1 - 1e-9)
        return median_s * math.exp(sigma * unit.inv_cdf(u))

    return latency
def _context_error_reply(dialect: str, ctx: int, prompt: int, max_tokens: int) -> Reply | None:
    if dialect == "llamacpp":
        if prompt < ctx:
            return None
        return Reply(
            400,
            {
                "error": {
                    "code": 400,
                    "message": f"request ({prompt} tokens) exceeds the available context size ({ctx} tokens), "
                    "try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": prompt,
                    "n_ctx": ctx,
                }
            },
        )
    if dialect == "vllm":
        if max_tokens > ctx:
            return _error(
                400,
                f"max_tokens={max_tokens} cannot be greater than max_model_len={ctx}. Please request fewer "
                "output tokens.",
                "BadRequestError",
            )
        if prompt + max_tokens > ctx:
            return _error(
                400,
                f"This model's maximum context length is {ctx} tokens. However, you requested "
                f"{prompt + max_tokens} tokens ({prompt} in the messages, {max_tokens} in the completion). "
                "Please reduce the length of the messages or completion.",
                "BadRequestError",
            )
        return None
    if dialect == "tgi":
        if prompt + max_tokens > ctx:
            return Reply(
                422,
                {
                    "error": f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= {ctx}. "
                    f"Given: {prompt} `inputs` tokens and {max_tokens} `max_new_tokens`",
                    "error_type": "validation",
                },
            )
        return None
    if prompt > ctx:
        return _error(
            400,
            f"This model's maximum context length is {ctx} tokens. However, your "
            f"messages resulted in {prompt} tokens. Please reduce the length of the messages.",
            "context_length_exceeded",
        )
    return None


def _error(status: int, message: str, code: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": code, "code": code}})


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
            self._send(_error(401, "Incorrect API key provided", "invalid_api_key"))
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
            self._send(_error(404, f"no route {self.path}", "not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(_error(404, f"no route {self.path}", "not_found"))
            return
        if not self.fake._authorized(self.headers.get("Authorization")):
            self._send(_error(401, "Incorrect API key provided", "invalid_api_key"))
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self._send(_error(400, "request body is not JSON", "invalid_request_error"))
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

"""The request/result types every model client shares (generation, critique, evaluation).

A model is addressed by a `ModelSpec`: an OpenAI-compatible base URL ending in /v1 (vLLM, llama.cpp,
KServe, OpenAI) or a local Hugging Face model directory / s3:// URI run in-process. Both backends take
the same `ChatRequest`s, may enforce a JSON schema (response_format on servers, grammar-constrained
decoding in-process), and report each result through `on_result` as soon as it completes, so callers
can checkpoint every paid-for call.

A failed request (after retries) does not raise: it comes back with `error` set, so one bad request
never loses the others. Errors that make every request fail (bad URL, missing model) raise UserError.
The backends (openai_client, hf_client) import these types only; the factory is `labpipe.llm.client`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[dict[str, str], ...] | list[dict[str, str]]
    request_id: str = ""  # content-derived id; checkpoints are keyed by it
    schema: dict[str, Any] | None = (
        None  # JSON schema the backend enforces; result.data holds the parsed value
    )
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    # sending order only (llm/order.py): higher first; a streamed flow sets the dependency chain's length
    priority: int = field(default=0, compare=False)


@dataclass
class ChatResult:
    request_id: str
    text: str = ""
    data: Any = None  # parsed JSON when the request had a schema and the reply satisfied it
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    error: str | None = None  # set when the request failed for good; text/data are then empty

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ModelSpec:
    target: str  # http(s)://host/v1, a local model directory, or s3://bucket/prefix
    model: str | None = None  # model name sent to an endpoint (default: the endpoint's first model)
    api_key_env: str = (
        "OPENAI_API_KEY"  # name of the variable holding the key; the key itself is never stored
    )
    concurrency: int = 32  # endpoints: the ceiling of each endpoint's adaptive limit (generation/limit.py)
    timeout_s: float = 120.0
    adaptive_concurrency: bool = True  # False: exactly `concurrency` in flight, whatever the server does
    max_retries: int = 6
    ca_bundle: str | None = None
    batch_size: int = 16  # in-process backend: prompts per generate() call
    extra: dict[str, Any] = field(default_factory=dict)
    backoff_base_s: float = (
        0.5  # retry n waits uniform(0, min(backoff_max_s, backoff_base_s * 2**n)) ("full jitter")
    )
    backoff_max_s: float = 30.0
    schema_retries: int = 2  # extra attempts (re-asks, each with another seed) for an unusable reply
    # How structured replies are asked for (see openai_client): auto = probe the server once;
    # json_schema = response_format json_schema; json_object = response_format json_object + schema in the
    # prompt; prompt = schema in the prompt only. (True/False are read as json_schema/prompt.)
    response_format: str | bool | None = "auto"
    context_length: int = 0  # the server's context window in tokens; 0 = as GET /models reports it
    revision: str = ""  # what the model's weights are (a commit, a digest) where the server reports nothing
    final_pass: bool = True  # requests that failed after all retries are tried once more at the end
    seed: int = 0  # in-process backend: sampling seed for requests without their own
    endpoint_failures: int = 3  # several endpoints: failed attempts in a row that take one out of rotation
    endpoint_cooldown_s: float = 5.0  # ... for this long (doubling while it keeps failing)

    @property
    def is_endpoint(self) -> bool:
        return self.target.startswith(("http://", "https://"))

    def describe(self) -> dict[str, str]:
        """What may be logged (params, lineage): never the API key."""
        return {
            "target": self.target,
            "model": self.model or "",
            "backend": "openai" if self.is_endpoint else "hf",
        }


@dataclass
class ClientStats:
    """Running counts of one client, for progress bars and MLflow metrics (`as_metrics`)."""

    requests: int = 0  # HTTP requests sent (every attempt), or prompts generated in-process
    completed: int = 0  # results delivered without error
    failed: int = 0  # results delivered with an error
    retries: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: Counter[str] = field(
        default_factory=Counter
    )  # failed attempts by kind (rate_limit, timeout, schema...)
    failures: Counter[str] = field(default_factory=Counter)  # requests that failed for good, by kind
    failure_examples: dict[str, str] = field(default_factory=dict)  # kind -> the first full reason
    probes: int = 0  # requests sent to learn what the server does (structured-output probe)
    final_pass: int = 0  # requests tried again in the final pass
    dialect: dict[str, Any] = field(default_factory=dict)  # what was learnt: structured mode, context

    def as_metrics(self, prefix: str = "") -> dict[str, float]:
        metrics = {
            f"{prefix}{name}": float(getattr(self, name))
            for name in ("requests", "completed", "failed", "retries", "prompt_tokens", "completion_tokens")
        }
        metrics.update({f"{prefix}errors.{kind}": float(n) for kind, n in sorted(self.errors.items())})
        metrics.update({f"{prefix}failures.{kind}": float(n) for kind, n in sorted(self.failures.items())})
        return metrics

    def record_failure(self, error: str) -> None:
        kind = failure_kind(error)
        self.failures[kind] += 1
        self.failure_examples.setdefault(kind, error)

    def summary(self) -> dict[str, Any]:
        """For manifests: counts, failures by kind with one full example reason each, the dialect."""
        return {
            "requests": self.requests,
            "probes": self.probes,
            "retries": self.retries,
            "final_pass": self.final_pass,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "failed_attempts": dict(sorted(self.errors.items())),
            "failures": {
                k: {"count": n, "example": self.failure_examples.get(k, "")}
                for k, n in sorted(self.failures.items())
            },
            **({"dialect": self.dialect} if self.dialect else {}),
        }


def failure_kind(error: str) -> str:
    """The kind of a ChatResult.error ("kind: message")."""
    kind, sep, _ = error.partition(":")
    return kind.strip() if sep and kind.strip().replace("_", "").isalnum() else "error"


def stats_of(client: Any, failed: int = 0) -> ClientStats:
    """The client's ClientStats; for a client without them, one that knows only how many failed."""
    stats = getattr(client, "stats", None)
    if isinstance(stats, ClientStats):
        return stats
    stats = ClientStats()
    for _ in range(failed):
        stats.record_failure("error: the request failed (this client gives no reasons)")
    return stats


class ChatClient(Protocol):
    model_name: str
    stats: ClientStats

    def complete(
        self, requests: Sequence[ChatRequest], on_result: Callable[[ChatResult], None] | None = None
    ) -> list[ChatResult]:
        """Run all requests (concurrently where the backend can); results in request order.

        A backend with `accepts_follow_ups = True` also sends the requests `on_result` returns."""
        ...

    def close(self) -> None: ...

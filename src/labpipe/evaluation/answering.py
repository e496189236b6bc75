"""MT-Bench's answers and verdicts, produced once and reused: through a serving engine, via the shared cache.

Keys (entries in the generation cache, labpipe.llm.cache: a local directory or an s3:// prefix, the
same `generation_cache` a cluster already has):
- an answer: the model's *content* digest (sha256 of its weight, config and tokenizer files; never paths or
  mtimes, so the same base model downloaded by another pod, or a candidate that trained to the same weights,
  is the same model), the engine, and the request itself: the conversation so far (the question's turns and
  the model's earlier answers: the questions' content), temperature, max_tokens and seed, and the question
  id and turn. The run's label for the model (candidate, base, checkpoint-40) is not part of it.
- a verdict: the judge's identity (its served model name, or an in-process judge's content digest), the
  prompt (the question, the answer and any reference are in it), the schema, sampling and the attempt.

So the base model's answers (and their verdicts) are generated once and reused by every later run; the
candidate's are new. A server that dies while answering is restarted (`EngineConfig.restarts`) and only the
answers still missing are asked again; if it dies again the stage fails with the server's last log lines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from labpipe.errors import UserError
from labpipe.llm.types import ChatRequest, ChatResult
from labpipe.models.identity import model_digest

log = logging.getLogger(__name__)


def local_identity(target: str) -> str:
    """A model directory or s3:// prefix by its content (an s3:// model is fetched into the model cache,
    where the in-process client will find it too)."""
    from labpipe import storage
    from labpipe.models.loading import resolve_model_dir

    local = storage.materialize_dir(target) if storage.is_s3(target) else target
    return "sha256:" + model_digest(resolve_model_dir(local))


@dataclass
class ReuseStats:
    asked: int = 0  # requests the stage needed
    cached: int = 0  # answered from the cache (this run's earlier attempts included)
    sent: int = 0  # sent to the model

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class CachedClient:
    """A ChatClient in front of another: requests whose key is in the cache (or was answered earlier in this
    process) are not sent; successful replies are stored as they arrive. `inner` can be swapped (a restarted
    server) while the memo and the counts stay."""

    def __init__(self, inner, cache, identity: str, *, kind: str):
        self.inner, self.cache, self.identity, self.kind = inner, cache, identity, kind
        self.reuse = ReuseStats()
        self._memo: dict[str, ChatResult] = {}
        self._lock = threading.Lock()

    @property
    def stats(self):
        return self.inner.stats

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def spec(self):
        return getattr(self.inner, "spec", None)

    def key(self, request: ChatRequest) -> str:
        from labpipe.llm.cache import cache_key

        return cache_key(replace(request, request_id=stable_id(request.request_id, self.kind)), self.identity)

    def complete(
        self, requests: Sequence[ChatRequest], on_result: Callable[[ChatResult], None] | None = None
    ) -> list[ChatResult]:
        keys = [self.key(r) for r in requests]
        with self._lock:
            found = {k: self._memo[k] for k in keys if k in self._memo}
        missing = [k for k in keys if k not in found]
        if self.cache is not None and missing:
            found.update(self.cache.get_many(missing))
        results: dict[int, ChatResult] = {}
        to_send: list[tuple[int, ChatRequest]] = []
        for i, (request, key) in enumerate(zip(requests, keys, strict=True)):
            hit = found.get(key)
            if hit is not None:
                results[i] = ChatResult(**{**asdict(hit), "request_id": request.request_id, "attempts": 0})
                if on_result:
                    on_result(results[i])
            else:
                to_send.append((i, request))
        by_id = {r.request_id: keys[i] for i, r in to_send}

        def store(result: ChatResult) -> None:
            key = by_id.get(result.request_id)
            if not result.ok or key is None:
                return
            with self._lock:
                if key in self._memo:
                    return
                self._memo[key] = result
            if self.cache is not None:
                self.cache.put(key, self.identity, result)

        def done(result: ChatResult) -> None:
            store(result)
            if on_result:
                on_result(result)

        with self._lock:
            self.reuse.asked += len(requests)
            self.reuse.cached += len(requests) - len(to_send)
            self.reuse.sent += len(to_send)
        if to_send:
            sent = self.inner.complete([r for _, r in to_send], on_result=done)
            for (i, _), result in zip(to_send, sent, strict=True):
                results[i] = result
                store(result)  # a client that does not call on_result for every request still gets cached
        if self.cache is not None:
            self.cache.flush()
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        self.inner.close()


def stable_id(request_id: str, kind: str) -> str:
    """The request id without the run's label of the model: answers `<label>:<qid>:<turn>` ->
    `mt-bench-answer:<qid>:<turn>`; verdicts `judge:<label>:<qid>:<turn>:<attempt>` ->
    `mt-bench-judge:<qid>:<turn>:<attempt>`."""
    parts = request_id.split(":")
    if kind == "judge" and len(parts) >= 5:
        return ":".join(["mt-bench-judge", *parts[-3:]])
    if kind == "answer" and len(parts) >= 3:
        return ":".join(["mt-bench-answer", *parts[-2:]])
    return f"mt-bench-{kind}:{request_id}"


@dataclass
class AnswerRun:
    answers: list[Any]
    reuse: ReuseStats
    engine: str
    starts: int = 0  # server starts (restarts included); 0 when every answer came from the cache


class _CacheOnly:
    """The client used to see whether every answer is in the cache before a server is started for them."""

    def __init__(self):
        from labpipe.llm.types import ClientStats

        self.stats, self.model_name, self.missing = ClientStats(), "", 0

    def complete(self, requests, on_result=None):
        self.missing += len(requests)
        return [ChatResult(r.request_id, error="not_cached: not in the answer cache") for r in requests]

    def close(self) -> None:
        pass


def model_identity(target: str, engine: str, endpoint_name: str = "") -> str:
    """What answers of `target` are keyed by: the engine and the model's content digest (a URL: its name)."""
    if target.startswith(("http://", "https://")):
        return f"endpoint:{endpoint_name or target}"
    return f"{engine}:" + local_identity(target)


def answer_model(
    cfg, target: str, questions, label: str, *, cache, workdir, endpoint_name: str = "", key_env: str = ""
) -> AnswerRun:
    """Every question answered by the model `target` through labpipe's client, cached answers reused.

    When the cache holds every answer, nothing is started. Otherwise the engine serves the model
    (engines.serve_model); a server that died while answering is restarted (`cfg.engine.restarts`) and only
    the missing answers are asked again; one that dies once more fails the stage with its last log lines."""
    from labpipe.evaluation.answers import generate_answers
    from labpipe.evaluation.engines import serve_model
    from labpipe.llm.client import make_client

    engine = cfg.engine
    kind = "endpoint" if target.startswith(("http://", "https://")) else engine.kind
    identity = model_identity(target, kind, endpoint_name)
    if cache is not None:
        probe = CachedClient(_CacheOnly(), cache, identity, kind="answer")
        quiet = logging.getLogger("labpipe.evaluation.answers")
        level, quiet.level = quiet.level, logging.ERROR  # a miss is not a failed answer
        try:
            answers = generate_answers(probe, questions, label, max_new_tokens=cfg.max_new_tokens)
        finally:
            quiet.setLevel(level)
        if probe.inner.missing == 0:
            log.info(
                "%s: all %d answers reused from the answer cache (%s)", label, probe.reuse.cached, cache.uri
            )
            return AnswerRun(answers, probe.reuse, kind)
    with serve_model(
        target,
        engine,
        label=label,
        endpoint_name=endpoint_name,
        workdir=workdir,
        max_new_tokens=cfg.max_new_tokens,
    ) as served:
        client = CachedClient(
            make_client(served.spec(**cfg.answer_options(key_env))), cache, identity, kind="answer"
        )
        restarts = engine.restarts if served.server is not None else 0
        try:
            while True:
                try:
                    answers = generate_answers(client, questions, label, max_new_tokens=cfg.max_new_tokens)
                except UserError:
                    if served.alive():
                        raise
                    answers = None  # the client gave up on a dead server
                if served.alive():
                    break
                server = served.server
                incomplete = len(questions) if answers is None else sum(1 for a in answers if a.errors)
                if restarts <= 0:
                    raise server.failure(
                        f"exited with code {server.returncode} while answering ({incomplete} of {len(questions)} "
                        "questions incomplete)"
                    )
                restarts -= 1
                log.warning(
                    "%s died while answering (code %s, %d questions incomplete): restarting it; only the "
                    "missing answers are asked again. Its last log lines:\n%s",
                    server.what,
                    server.returncode,
                    incomplete,
                    server.tail(10),
                )
                client.inner.close()
                served.restart()
                client.inner = make_client(served.spec(**cfg.answer_options(key_env)))
        finally:
            client.close()
        return AnswerRun(answers, client.reuse, served.engine, served.server.starts if served.server else 0)


def judge_client_cached(client, spec, cache) -> CachedClient:
    """The judge behind the cache: verdicts keyed by the judge's identity and the whole prompt."""
    identity = (
        f"endpoint:{spec.model or client.model_name}"
        if spec.is_endpoint
        else "hf:" + local_identity(spec.target)
    )
    return CachedClient(client, cache, identity, kind="judge")

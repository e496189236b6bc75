"""Checkpoints of paid-for model calls: one JSONL file per leaf, one line per completed request.

A line is appended and flushed as soon as the client reports a successful result, so a `kill -9`
loses at most the requests in flight. On load, a torn last line (the process died mid-write) is cut
off before anything new is appended. Lines are keyed by the content-derived request id: a rerun
looks every planned request up here and sends only the ones that are missing. Failed requests are
not recorded; a rerun tries them again.

With a shared `GenerationCache` (generation/cache.py), `complete` first looks every request that is
not checkpointed here up in the cache (one batch per call), and every new reply is also stored
there. Cache hits are appended to the leaf files too, so checkpoints/ stays the complete record of
the replies an output was built from (it travels with the output; a rerun in the same directory needs
no cache lookups), while the cache is what a fresh directory, a retried pod or another run reuses.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from labpipe.llm.cache import GenerationCache, cache_key, model_identity
from labpipe.llm.types import ChatClient, ChatRequest, ChatResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def leaf_file_name(leaf_id: str) -> str:
    from labpipe.generation.flow import digest

    return f"{_UNSAFE.sub('_', leaf_id).strip('_')[:80]}-{digest(leaf_id, 8)}.jsonl"


def _load(path: Path) -> dict[str, ChatResult]:
    """Read a checkpoint file, truncating a torn last line in place."""
    results: dict[str, ChatResult] = {}
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
    if good < len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
    for line in data[:good].splitlines():
        try:
            row = json.loads(line)
            results[row["request_id"]] = ChatResult(**row)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a corrupt line costs one request, never the run
    return results


@dataclass
class CallStats:
    sent: int = 0
    cached: int = 0  # reused, not sent: from this checkpoint or the shared cache
    cache_hits: int = 0  # of which from the shared generation cache
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Checkpoint:
    """Completed results under `directory`, one file per leaf; thread-safe appends."""

    def __init__(self, directory: str | Path, cache: GenerationCache | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cache = cache
        self._lock = threading.Lock()
        self._files: dict[str, object] = {}
        self._results: dict[str, ChatResult] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # request id -> (cache key, model identity)
        self._from_cache: set[str] = set()
        for path in sorted(self.dir.glob("*.jsonl")):
            self._results.update(_load(path))

    def __len__(self) -> int:
        return len(self._results)

    def get(self, request_id: str) -> ChatResult | None:
        return self._results.get(request_id)

    def from_cache(self, request_id: str) -> bool:
        return request_id in self._from_cache

    def lookup(self, requests: Sequence[tuple[str, ChatRequest]], model: str) -> int:
        """Fetch from the shared cache, in one batch, every request not checkpointed here; hits are
        checkpointed (not written back to the cache). Returns the number of hits."""
        if self.cache is None:
            return 0
        todo: dict[str, tuple[str, str]] = {}
        for leaf_id, request in requests:
            rid = request.request_id
            if rid in self._results or rid in todo:
                continue
            key = cache_key(request, model)
            self._keys[rid] = (key, model)
            todo[rid] = (leaf_id, key)
        hits = self.cache.get_many(key for _, key in todo.values())
        n = 0
        for rid, (leaf_id, key) in todo.items():
            if key in hits:
                self._append(leaf_id, ChatResult(**{**asdict(hits[key]), "request_id": rid}))
                self._from_cache.add(rid)
                n += 1
        return n

    def record(self, leaf_id: str, result: ChatResult) -> None:
        if not result.ok:
            return
        self._append(leaf_id, result)
        entry = self._keys.get(result.request_id)
        if self.cache is not None and entry is not None:
            self.cache.put(entry[0], entry[1], result)

    def flush(self) -> None:
        """Wait until every reply recorded so far is in the shared cache (raises UserError if not)."""
        if self.cache is not None:
            self.cache.flush()

    def _append(self, leaf_id: str, result: ChatResult) -> None:
        line = json.dumps(asdict(result), ensure_ascii=False) + "\n"
        with self._lock:
            f = self._files.get(leaf_id)
            if f is None:
                f = self._files[leaf_id] = open(self.dir / leaf_file_name(leaf_id), "a", encoding="utf-8")
            f.write(line)
            f.flush()
            self._results[result.request_id] = result

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def complete(
    client: ChatClient,
    requests: Sequence[tuple[str, ChatRequest]],
    checkpoint: Checkpoint,
    stats: CallStats,
    on_result: Callable[[str, ChatResult, bool], None] | None = None,
) -> dict[str, ChatResult]:
    """Results for `(leaf_id, request)` pairs: from the checkpoint when present, else from `client`.

    Every new successful result is checkpointed the moment it arrives. `on_result(leaf_id, result,
    cached)` drives progress bars. Duplicate request ids are sent once. With a shared cache on the
    checkpoint, its entries are reused (`stats.cache_hits`) and new replies are stored in it before
    this returns.
    """
    if checkpoint.cache is not None and requests:
        checkpoint.lookup(requests, model_identity(client))
    results: dict[str, ChatResult] = {}
    leaf_of: dict[str, str] = {}
    to_send: list[ChatRequest] = []
    for leaf_id, request in requests:
        if request.request_id in results or request.request_id in leaf_of:
            continue
        hit = checkpoint.get(request.request_id)
        if hit is not None:
            results[request.request_id] = hit
            stats.cached += 1
            stats.cache_hits += 1 if checkpoint.from_cache(request.request_id) else 0
            if on_result:
                on_result(leaf_id, hit, True)
        else:
            leaf_of[request.request_id] = leaf_id
            to_send.append(request)
    if not to_send:
        return results
    lock = threading.Lock()

    def done(result: ChatResult) -> None:
        leaf_id = leaf_of.get(result.request_id, "")
        checkpoint.record(leaf_id, result)
        with lock:
            results[result.request_id] = result
            stats.retries += max(0, result.attempts - 1)
            stats.prompt_tokens += result.prompt_tokens
            stats.completion_tokens += result.completion_tokens
            stats.failed += 0 if result.ok else 1
        if on_result:
            on_result(leaf_id, result, False)

    stats.sent += len(to_send)
    final = client.complete(to_send, on_result=done)
    for result in final:  # a client that does not call on_result for every request still gets recorded
        if result.request_id not in results:
            done(result)
    checkpoint.flush()
    return results


def iter_rows(path: str | Path) -> Iterable[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)

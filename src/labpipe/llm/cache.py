"""A shared, content-keyed cache of completed teacher and judge replies (local directory or s3:// prefix).

    cache = open_cache("s3://bucket/labpipe/generation-cache")   # "" = local, under $LABPIPE_CACHE
    hits = cache.get_many({key: ...})                             # batched, parallel on S3
    cache.put(key, model, result); cache.flush()                  # write-once, atomic

Key: sha256 of everything that determines a reply: the request's content-derived id (flow name and
version, step, fan-out index, seed: see generation/flow.py), its rendered messages, JSON schema and
sampling, and the model's identity (the endpoint's model name, or the in-process model directory's
name and the names, sizes and contents of its files; never a path's parent or a file time). Unchanged leaves therefore cost no request in later runs,
a retried pod resends nothing already answered, and concurrent runs and shards share replies.

Entries live at `<root>/v1/<key[:2]>/<key>.json`: the result plus a sha256 of it. An entry whose
digest, key or JSON does not check out (truncated, corrupted) is counted as `corrupt`, never used,
re-requested, and then replaced; a valid entry is never overwritten (locally: link(2) of a complete
temporary file; on S3: PutObject with If-None-Match: *, so an object is visible only when
complete and a concurrent writer's object wins). S3 calls are retried by botocore (standard mode);
what still fails becomes one UserError naming the cache URI.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.llm.types import ChatRequest, ChatResult

LAYOUT = "v1"
OFF = "off"  # --cache off: no shared cache (the per-leaf checkpoints still resume a run)


def default_uri() -> str:
    from labpipe.storage import cache_dir

    return str(cache_dir() / "generation")


def cache_key(request: ChatRequest, model: str) -> str:
    """The entry name of `request` sent to `model` (a model identity, see `model_identity`)."""
    body = [
        LAYOUT,
        model,
        request.request_id,
        list(request.messages),
        request.schema,
        request.temperature,
        request.max_tokens,
        request.seed,
    ]
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def model_identity(client: Any) -> str:
    """What identifies the model behind `client`: its local files, or its served name together with what
    the endpoint reports about the model behind that name (`served_identity`: vLLM's root and
    max_model_len, llama.cpp's model metadata, an explicit revision). A different model served under the
    same name (a swapped teacher behind KServe's `teacher`) never reuses the other's replies; replicas of
    one model report the same and share them. A server that reports nothing keys by the name alone
    (pass a `revision` for it)."""
    spec = getattr(client, "spec", None)
    if spec is not None and not spec.is_endpoint:
        return "hf:" + local_model_identity(spec.target)
    name = spec.model if spec is not None and spec.model else ""
    if not hasattr(client, "served_identity"):  # a client that cannot say more than the name
        return "model:" + (name or str(getattr(client, "model_name", "") or ""))
    memo = _IdentityMemo(f"{spec.target}|{name}|{spec.revision}") if spec is not None else None
    try:
        served = client.served_identity()
    except UserError as exc:  # the endpoint is down: what it served last time (a cached rerun sends nothing)
        remembered = memo.get() if memo is not None and exc.transient else None
        if remembered is None:
            raise
        return remembered
    name = name or str(client.model_name)
    identity = "model:" + name
    if served:
        digest = hashlib.sha256(json.dumps(served, sort_keys=True, default=str).encode()).hexdigest()[:16]
        identity = f"{identity}@{digest}"
    if memo is not None:
        memo.put(identity)
    return identity


class _IdentityMemo:
    """The model identity last seen at an endpoint, under $LABPIPE_CACHE (model-identities.json)."""

    def __init__(self, key: str):
        from labpipe.storage import cache_dir

        self.key, self.path = key, cache_dir() / "model-identities.json"

    def _all(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self) -> str | None:
        return self._all().get(self.key)

    def put(self, identity: str) -> None:
        known = self._all()
        if known.get(self.key) == identity:
            return
        known[self.key] = identity
        try:
            from labpipe.storage import atomic_path

            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        except OSError:
            pass  # a memo only: the next run asks the endpoint again


def local_model_identity(target: str) -> str:
    """What the files of a local model hold (models/identity.py: names and contents), never where or when they
    were written: the same model rebuilt or copied elsewhere keeps its cache entries (a rerun resends nothing)."""
    from labpipe.models.identity import model_digest, model_files
    from labpipe.storage import is_s3

    if is_s3(target):
        return target.rstrip("/")
    path = Path(target).resolve()
    digest = model_digest(path) if path.is_dir() and model_files(path) else hashlib.sha256(b"[]").hexdigest()
    return f"{path.name}@{digest[:16]}"


def encode_entry(key: str, model: str, result: ChatResult) -> bytes:
    body = asdict(result)
    return json.dumps(
        {"key": key, "model": model, "sha256": _payload_digest(body), "result": body}, ensure_ascii=False
    ).encode("utf-8")


def decode_entry(key: str, data: bytes) -> ChatResult | None:
    """The result stored in `data`, or None when the entry is not intact (then it is never used)."""
    try:
        obj = json.loads(data.decode("utf-8"))
        body = obj["result"]
        if obj.get("key") != key or obj.get("sha256") != _payload_digest(body):
            return None
        result = ChatResult(**body)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return result if result.ok else None


def _payload_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class CacheStats:
    lookups: int = 0  # keys looked up
    lookup_batches: int = 0  # get_many calls (each one parallel batch)
    hits: int = 0
    corrupt: int = 0  # entries found but not intact: re-requested and replaced
    writes: int = 0  # entries written by this process
    write_conflicts: int = 0  # another writer had stored the entry first (theirs is kept)


class _LocalStore:
    def __init__(self, root: Path):
        self.root = root

    def get(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, name: str, data: bytes, *, replace: bool) -> bool:
        dest = self.root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)  # no fsync: survives kill -9 (the page cache), not a node crash
            if replace:
                os.replace(tmp, dest)
                return True
            try:
                os.link(tmp, dest)  # fails if the entry exists: never overwrite a valid entry
            except FileExistsError:
                return False
            return True
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class _S3Store:
    def __init__(self, uri: str, *, max_attempts: int, workers: int):
        import boto3
        from botocore.config import Config

        from labpipe.storage import split_s3

        self.bucket, prefix = split_s3(uri)
        self.prefix = prefix.strip("/")
        self.client = boto3.client(
            "s3",
            config=Config(
                retries={"max_attempts": max_attempts, "mode": "standard"},
                max_pool_connections=workers,
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        self._conditional = True  # If-None-Match: * (AWS, MinIO, Ceph RGW recent); else head-then-put

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def get(self, name: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def put(self, name: str, data: bytes, *, replace: bool) -> bool:
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(name),
            "Body": data,
            "ContentType": "application/json",
            "Metadata": {"sha256": hashlib.sha256(data).hexdigest()},
        }
        if not replace and not self._conditional and self.get(name) is not None:
            return False
        try:
            self.client.put_object(**args, **({"IfNoneMatch": "*"} if not replace and self._conditional else {}))
            return True
        except ClientError as exc:
            code = _code(exc)
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False  # someone stored it first; entries are immutable
            if code in ("NotImplemented", "501") and self._conditional:
                self._conditional = False
                return self.put(name, data, replace=replace)
            raise


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class GenerationCache:
    """Write-once replies keyed by `cache_key`; see the module docstring. Thread-safe."""

    def __init__(self, uri: str = "", *, max_attempts: int = 5, workers: int = 32):
        from labpipe.storage import is_s3

        self.uri = uri or default_uri()
        self.is_s3 = is_s3(self.uri)
        self.workers = workers
        self.store: _LocalStore | _S3Store = (
            _S3Store(self.uri, max_attempts=max_attempts, workers=workers)
            if self.is_s3
            else _LocalStore(Path(self.uri))
        )
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._corrupt: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def __repr__(self) -> str:
        return f"GenerationCache({self.uri!r})"

    @staticmethod
    def entry_name(key: str) -> str:
        return f"{LAYOUT}/{key[:2]}/{key}.json"

    def get_many(self, keys: Iterable[str]) -> dict[str, ChatResult]:
        """The intact entries among `keys`: one parallel batch (a thread pool of GETs on S3)."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        if self.is_s3 and len(keys) > 1:
            with ThreadPoolExecutor(min(self.workers, len(keys))) as pool:
                blobs = list(pool.map(lambda k: self._call("read", self.store.get, self.entry_name(k)), keys))
        else:
            blobs = [self._call("read", self.store.get, self.entry_name(k)) for k in keys]
        hits: dict[str, ChatResult] = {}
        with self._lock:
            self.stats.lookups += len(keys)
            self.stats.lookup_batches += 1
            for key, blob in zip(keys, blobs, strict=True):
                if blob is None:
                    continue
                result = decode_entry(key, blob)
                if result is None:
                    self.stats.corrupt += 1
                    self._corrupt.add(key)
                else:
                    hits[key] = result
            self.stats.hits += len(hits)
        return hits

    def put(self, key: str, model: str, result: ChatResult) -> None:
        """Store a successful result (failed ones are never cached). Local: now; S3: in the background
        (call `flush` to wait and surface errors), so a slow object store never stalls the client."""
        if not result.ok:
            return
        data = encode_entry(key, model, result)
        if not self.is_s3:
            self._write(key, data)
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(min(self.workers, 16), thread_name_prefix="gen-cache")
            self._pending.append(self._pool.submit(self._write, key, data))

    def _write(self, key: str, data: bytes) -> None:
        with self._lock:
            replace = key in self._corrupt
        stored = self._call("write", self.store.put, self.entry_name(key), data, replace=replace)
        with self._lock:
            self._corrupt.discard(key)
            if stored:
                self.stats.writes += 1
            else:
                self.stats.write_conflicts += 1

    def flush(self) -> None:
        """Wait for background writes; the first failure becomes a UserError."""
        with self._lock:
            pending, self._pending = self._pending, []
        errors = []
        for future in pending:
            try:
                future.result()
            except UserError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except Exception as exc:  # botocore/OS errors after botocore's own retries
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise UserError(
                Problem(
                    where=self.uri,
                    rule="generation-cache",
                    field="generation_cache",
                    message=f"cannot {what} the generation cache ({reason})",
                    fix="check that the cache location is reachable and writable (for s3://: "
                    "AWS_ENDPOINT_URL and the credentials from the S3 secret); rerunning resends "
                    "nothing already stored",
                ),
                transient=True,  # a store that is down may be back for a retry of the task
            ) from None


def open_cache(uri: str = "", **kwargs: Any) -> GenerationCache | None:
    """The cache at `uri` ("" = local default under LABPIPE_CACHE; "off", or "none", = no cache)."""
    if uri.strip().lower() in (OFF, "none"):  # `--cache none` made a cache folder named "none"
        return None
    return GenerationCache(uri.strip(), **kwargs)

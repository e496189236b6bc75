"""Where the MT-Bench data files come from: FastChat's published files at a pinned commit, sha256-verified.

Each file may also be given as a local path, an s3:// URI or an http(s) URL, or found in a data directory
laid out like ../shared/data/mt_bench (question.jsonl, judge_prompts.jsonl, reference_answer/gpt-4.jsonl).
Downloads are cached under $LABPIPE_CACHE/mt_bench, so a machine that fetched once works offline after.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from labpipe import storage
from labpipe.errors import Problem, UserError

DATA_ENV = "LABPIPE_MT_BENCH_DATA"  # a data directory shipped in the image; used when no source is given
FASTCHAT_COMMIT = "0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
_RAW = f"https://raw.githubusercontent.com/lm-sys/FastChat/{FASTCHAT_COMMIT}/fastchat/llm_judge/data"


@dataclass(frozen=True)
class PinnedFile:
    name: str  # path inside a data directory
    url: str
    sha256: str


QUESTIONS = PinnedFile(
    "question.jsonl",
    f"{_RAW}/mt_bench/question.jsonl",
    "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
)
JUDGE_PROMPTS = PinnedFile(
    "judge_prompts.jsonl",
    f"{_RAW}/judge_prompts.jsonl",
    "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
)
REFERENCE_ANSWERS = PinnedFile(
    "reference_answer/gpt-4.jsonl",
    f"{_RAW}/mt_bench/reference_answer/gpt-4.jsonl",
    "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
)


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def resolve(source: str, pinned: PinnedFile, data_dir: str = "") -> str:
    """The location of one file: `source` if given, else inside `data_dir`, else inside $LABPIPE_MT_BENCH_DATA,
    else the pinned URL (never inside a Kubernetes pod: there the data must be in the image or given)."""
    if source:
        if not is_url(source) and not source.endswith(".jsonl") and _is_dir(source):
            return storage.join(source, pinned.name)
        return source
    if data_dir:
        return storage.join(data_dir, pinned.name)
    if os.environ.get(DATA_ENV):  # the copy baked into the evaluation image
        return storage.join(os.environ[DATA_ENV], pinned.name)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):  # in a pod: never the internet unless a URL is passed
        raise UserError(
            Problem(
                where="questions",
                rule="mt-bench-data",
                field="questions",
                message=f"no MT-Bench data: questions is empty and this image has no {DATA_ENV}",
                fix="use the labpipe-evaluation image (it ships the data), pass questions=s3://…/mt_bench, "
                "or pass FastChat's URL explicitly to download it at run time",
            )
        )
    return pinned.url


def _is_dir(source: str) -> bool:
    return storage.is_s3(source) or Path(source).is_dir()


def fetch(location: str, pinned: PinnedFile, *, verify: bool = True) -> tuple[bytes, str]:
    """Read `location` (path, s3:// or URL); with `verify`, require the pinned sha256. Returns (bytes, sha256)."""
    cached = _cache_path(location) if is_url(location) else None
    if cached is not None and cached.exists():
        data = cached.read_bytes()
    else:
        data = _download(location) if cached is not None else storage.read_bytes(location)
    digest = hashlib.sha256(data).hexdigest()
    if verify and digest != pinned.sha256:
        raise UserError(
            Problem(
                where=location,
                rule="checksum",
                field="sha256",
                message=f"sha256 {digest[:16]}... differs from FastChat's {pinned.name} at "
                f"{FASTCHAT_COMMIT[:10]} ({pinned.sha256[:16]}...): the file is altered or not MT-Bench's",
                fix="restore the original file, or turn verification off (--no-verify) for a custom set",
            )
        )
    if cached is not None and not cached.exists():
        storage.write_bytes(str(cached), data)  # only verified (or explicitly unverified) bytes are cached
    return data, digest


def _cache_path(url: str) -> Path:
    return (
        storage.cache_dir()
        / "mt_bench"
        / hashlib.sha256(url.encode()).hexdigest()[:16]
        / url.rsplit("/", 1)[-1]
    )


def _download(url: str) -> bytes:
    import httpx

    try:
        response = httpx.get(url, timeout=60.0, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise UserError(
            Problem(
                where=url,
                rule="download",
                message=f"cannot download ({exc})",
                fix="check the network, or pass a local copy with --questions DIR|FILE",
            )
        ) from None
    return response.content

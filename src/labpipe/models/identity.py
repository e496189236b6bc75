"""What a local model *is*: the digest of its files' contents (weights, config, tokenizer, chat template), never
their paths or times. One digest for every cache that keys on a local model: MT-Bench answers
(evaluation/answering.py), the reply cache of an in-process teacher or judge (generation/cache.py) and the
local training checkpoints (training/task.py)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from labpipe.errors import Problem, UserError

_SKIP_FILES = ("optimizer", "scheduler", "rng_state", "trainer_state", "training_args", "scaler")
_MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja", ".tiktoken", ".gguf", ".py")
_DIGESTS: dict[tuple, str] = {}
_DIGEST_LOCK = threading.Lock()


def model_files(model_dir: str | Path) -> list[Path]:
    """The files that make a model what it is: weights, config, tokenizer, chat template (top level only;
    a training output's checkpoints/ and optimizer states are not part of the model)."""
    root = Path(model_dir)
    return sorted(
        p
        for p in root.iterdir()
        if p.is_file() and p.name.endswith(_MODEL_SUFFIXES) and not p.name.startswith((".", *_SKIP_FILES))
    )


def model_digest(model_dir: str | Path) -> str:
    """sha256 over (name, sha256 of content) of `model_files`; memoised per process by (path, size, mtime)."""
    from labpipe.storage import sha256_file

    files = model_files(model_dir)
    if not files:
        raise UserError(
            Problem(
                str(model_dir),
                "model",
                "no model files (config, weights) in this directory",
                "pass a Hugging Face model directory",
            )
        )
    memo = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    with _DIGEST_LOCK:
        if memo in _DIGESTS:
            return _DIGESTS[memo]
    body = [(p.name, sha256_file(p)) for p in files]
    digest = hashlib.sha256(json.dumps(body).encode()).hexdigest()
    with _DIGEST_LOCK:
        _DIGESTS[memo] = digest
    return digest



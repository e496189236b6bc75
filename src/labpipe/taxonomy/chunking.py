"""Split document text into chunks of at most `budget` tokens, on the largest boundary that fits.

Boundaries, in order: blank lines (paragraphs), line breaks, sentence ends, spaces. Tokens are counted
with the tokenizer of the model in use when one is given (a model directory or s3:// URI), else with
`labpipe.taxonomy.schema.approx_tokens` (one token per word or punctuation mark).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from labpipe.taxonomy.schema import approx_tokens

Counter = Callable[[str], int]
_SPLITTERS = [
    (re.compile(r"\n\s*\n"), "\n\n"),
    (re.compile(r"\n"), "\n"),
    (re.compile(r"(?<=[.!?])\s+"), " "),
    (re.compile(r"\s+"), " "),
]


def token_counter(tokenizer: str = "") -> Counter:
    """A function counting tokens with the tokenizer at `tokenizer` (path or s3:// URI), or the approximation."""
    if not tokenizer:
        return approx_tokens
    from transformers import AutoTokenizer

    from labpipe.storage import materialize_dir

    tok = AutoTokenizer.from_pretrained(str(materialize_dir(tokenizer)))
    return lambda text: len(tok.encode(text, add_special_tokens=False))


def chunk_text(text: str, budget: int, count: Counter = approx_tokens) -> list[str]:
    """Chunks of `text`, each at most `budget` tokens (a single word longer than that stays whole)."""
    if budget < 1:
        raise ValueError("budget must be at least 1 token")
    text = text.strip()
    if not text:
        return []
    return [c for c in _split(text, budget, count, 0) if c.strip()]


def _split(text: str, budget: int, count: Counter, level: int) -> list[str]:
    if count(text) <= budget or level >= len(_SPLITTERS):
        return [text]
    pattern, sep = _SPLITTERS[level]
    pieces = [p.strip() for p in pattern.split(text) if p.strip()]
    if len(pieces) <= 1:
        return _split(text, budget, count, level + 1)
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    sep_cost = count(sep) if sep.strip() else 0
    for piece in pieces:
        n = count(piece)
        if n > budget:
            if current:
                chunks.append(sep.join(current))
                current, used = [], 0
            chunks += _split(piece, budget, count, level + 1)
            continue
        if current and used + sep_cost + n > budget:
            chunks.append(sep.join(current))
            current, used = [], 0
        used += (sep_cost if current else 0) + n
        current.append(piece)
    if current:
        chunks.append(sep.join(current))
    # Token counts are not exactly additive (merges across a joint): re-split the rare chunk that overflows.
    out: list[str] = []
    for chunk in chunks:
        if count(chunk) > budget and chunk not in pieces:
            out += [
                p for part in pattern.split(chunk) for p in _split(part.strip(), budget, count, level + 1)
            ]
        else:
            out.append(chunk)
    return out

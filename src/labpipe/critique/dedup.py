"""Near-duplicate removal with MinHash LSH (datasketch) over word shingles of question + answer.

Records are visited in a fixed order (the caller's); the first of a group of near-duplicates is
kept. A threshold of 1.0 or more removes exact duplicates (after case, punctuation and whitespace normalisation) only.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

NUM_PERM = 64


def _text(rec: dict[str, Any]) -> str:
    text = f"{rec.get('question', '')} {rec.get('answer', '')}".lower()
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text)).strip()


def _shingles(text: str, n: int = 3) -> set[str]:
    words = text.split()
    if len(words) < n:
        return {text}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def near_duplicates(records: list[dict[str, Any]], threshold: float) -> dict[str, str]:
    """record id -> id of the earlier record it duplicates, for every record to drop."""
    dropped: dict[str, str] = {}
    if threshold >= 1.0:
        seen: dict[str, str] = {}
        for rec in records:
            key = hashlib.sha256(_text(rec).encode()).hexdigest()
            if key in seen:
                dropped[rec["id"]] = seen[key]
            else:
                seen[key] = rec["id"]
        return dropped
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for rec in records:
        mh = MinHash(num_perm=NUM_PERM, seed=1)
        for s in _shingles(_text(rec)):
            mh.update(s.encode())
        hits = lsh.query(mh)
        if hits:
            dropped[rec["id"]] = sorted(hits)[0]
        elif rec["id"] not in lsh:
            lsh.insert(rec["id"], mh)
    return dropped

"""Overlap of a leaf's seeds with the rest of the taxonomy: near-duplicates and contradictions.

Near-duplicates use critique's measure (`labpipe.critique.dedup`: Jaccard similarity of the word 3-shingles of
the normalised question + answer, at or above the critique profile's `dedup_threshold`), computed exactly for
every pair of the leaf's seeds and the other leaves' seeds. Critique estimates the same similarity with
MinHash LSH, which scales to the generated records but misses pairs near the threshold (on the public
taxonomy it misses two seed pairs at 0.90 and 0.92: benchmarks/RESULTS.md); a taxonomy's seeds are few
enough to compare exactly, and faster so (a pair is skipped when the sizes of its shingle sets alone rule
the threshold out). A contradiction is the same question (after critique's case, punctuation and
whitespace normalisation) with a different answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Seed:
    leaf_id: str
    index: int  # 1-based position among the leaf's seed examples
    question: str
    answer: str

    @property
    def id(self) -> str:
        return f"{self.leaf_id}#{self.index}"


@dataclass
class Overlap:
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)  # {seed, of, question}
    contradictions: list[dict[str, Any]] = field(default_factory=list)  # {seed, of, question}

    def leaves(self) -> list[str]:
        """The other leaves involved, in order of appearance."""
        seen: dict[str, None] = {}
        for hit in self.near_duplicates + self.contradictions:
            seen[hit["of"].rsplit("#", 1)[0]] = None
        return list(seen)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def seeds_of(leaf_id: str, examples: list[dict[str, str]]) -> list[Seed]:
    """Seed-record examples (taxonomy.seeds.seed_examples) as Seeds; a knowledge example's context is not
    part of the measure (one context is shared by three Q&As)."""
    return [Seed(leaf_id, i, ex["question"], ex["answer"]) for i, ex in enumerate(examples, 1)]


def find_overlap(leaf: list[Seed], others: list[Seed], threshold: float) -> Overlap:
    """Seeds of `leaf` that duplicate or contradict one of `others` (every other leaf's seeds); a near-duplicate
    names the most similar other seed."""
    from labpipe.critique.dedup import jaccard, shingle_set

    def features(s: Seed) -> set[str]:
        return shingle_set({"question": s.question, "answer": s.answer})

    theirs = [(s, features(s)) for s in others]
    out = Overlap()
    for s in leaf:
        mine = features(s)
        best, best_j = None, threshold
        for other, shingles in theirs:
            small, large = sorted((len(mine), len(shingles)))
            if large and small / large < best_j:  # |A & B| / |A | B| <= min / max: cannot reach it
                continue
            j = jaccard(mine, shingles)
            if j >= best_j and (best is None or j > best_j):
                best, best_j = other, j
        if best is not None:
            out.near_duplicates.append(
                {"seed": s.id, "of": best.id, "question": s.question, "similarity": round(best_j, 3)}
            )
    by_question: dict[str, Seed] = {}
    for s in others:
        by_question.setdefault(_norm(s.question), s)
    for s in leaf:
        other = by_question.get(_norm(s.question))
        if other is not None and _norm(other.answer) != _norm(s.answer):
            out.contradictions.append({"seed": s.id, "of": other.id, "question": s.question})
    return out

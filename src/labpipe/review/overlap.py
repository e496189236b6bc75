"""Overlap of a leaf's seeds with the rest of the taxonomy: near-duplicates and contradictions.

Near-duplicates use critique's measure unchanged (`labpipe.critique.dedup.near_duplicates`: MinHash
LSH over word 3-shingles of question + answer, at the critique profile's `dedup_threshold`): the other
leaves' seeds go first, the reviewed leaf's last, so every seed of the leaf that critique would drop as
a near-duplicate of an existing seed is found, with the seed it duplicates. A contradiction is the same
question (after critique's case, punctuation and whitespace normalisation) with a different answer.
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
    """Seeds of `leaf` that duplicate or contradict one of `others` (every other leaf's seeds)."""
    from labpipe.critique.dedup import near_duplicates

    records = [{"id": s.id, "question": s.question, "answer": s.answer} for s in (*others, *leaf)]
    mine = {s.id: s for s in leaf}
    theirs = {s.id: s for s in others}
    out = Overlap()
    for rec_id, of in near_duplicates(records, threshold).items():
        if rec_id in mine and of in theirs:
            out.near_duplicates.append({"seed": rec_id, "of": of, "question": mine[rec_id].question})
    by_question: dict[str, Seed] = {}
    for s in others:
        by_question.setdefault(_norm(s.question), s)
    for s in leaf:
        other = by_question.get(_norm(s.question))
        if other is not None and _norm(other.answer) != _norm(s.answer):
            out.contradictions.append({"seed": s.id, "of": other.id, "question": s.question})
    return out

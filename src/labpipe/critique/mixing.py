"""Mixing kept records into the two training sets (messages JSONL), deterministically under a seed.

- knowledge set: every kept knowledge record, its chunk in the user turn before the question;
- skills set: up to `samples_per_skill_leaf` kept records per skill leaf (LAB: 30), plus a replay
  sample of the knowledge set (metadata.phase "knowledge_replay"), shuffled.
"""

from __future__ import annotations

import math
import random
from typing import Any

SKILL_KINDS = ("freeform_skill", "grounded_skill", "foundational_skill")


def to_messages(rec: dict[str, Any], phase: str) -> dict[str, Any]:
    question, answer = rec["question"].strip(), rec["answer"].strip()
    if rec["kind"] == "knowledge":
        user = f"{rec['chunk'].strip()}\n\n{question}"
    elif rec.get("context"):
        user = f"{rec['context'].strip()}\n\n{question}"
    else:
        user = question
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
        "metadata": {
            "leaf_id": rec["leaf_id"],
            "kind": rec["kind"],
            "source_id": rec["id"],
            "flow": rec.get("flow", ""),
            "scores": {k: v.get("score") for k, v in (rec.get("scores") or {}).items()},
            "phase": phase,
        },
    }


def mix(
    kept: list[dict[str, Any]], *, samples_per_skill_leaf: int, replay_ratio: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """(knowledge set, skills set, sampled count per skill leaf)."""
    rng = random.Random(seed)
    ordered = sorted(kept, key=lambda r: (r["leaf_id"], r["id"]))
    knowledge = [to_messages(r, "knowledge") for r in ordered if r["kind"] == "knowledge"]
    rng.shuffle(knowledge)
    skills, sampled = [], {}
    by_leaf: dict[str, list[dict[str, Any]]] = {}
    for r in ordered:
        if r["kind"] in SKILL_KINDS:
            by_leaf.setdefault(r["leaf_id"], []).append(r)
    for leaf, recs in by_leaf.items():
        pick = rng.sample(recs, min(samples_per_skill_leaf, len(recs)))
        sampled[leaf] = len(pick)
        skills += [to_messages(r, "skills") for r in pick]
    replay_n = min(len(knowledge), math.ceil(replay_ratio * len(knowledge)))
    for ex in rng.sample(knowledge, replay_n):
        skills.append({**ex, "metadata": {**ex["metadata"], "phase": "knowledge_replay"}})
    rng.shuffle(skills)
    return knowledge, skills, sampled

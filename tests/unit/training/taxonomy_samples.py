"""Training rows in the critique stage's messages-JSONL format, built from the real InstructLab taxonomy.

Until the generation and critique stages land, the seed examples of the public taxonomy (../shared/data)
stand in for their output: knowledge leaves give grounded Q&A (document excerpt + question -> answer),
skill leaves give (context +) question -> answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

SYSTEM = "You are a helpful assistant trained with the LAB method."


def _rows(shared_data: Path) -> tuple[list[dict], list[dict]]:
    knowledge, skills = [], []
    for qna in sorted((shared_data / "taxonomy" / "head").rglob("qna.yaml")):
        leaf = qna.parent.relative_to(shared_data / "taxonomy" / "head").as_posix()
        doc = yaml.safe_load(qna.read_text())
        for ex in doc.get("seed_examples") or []:
            if "questions_and_answers" in ex:
                for qa in ex["questions_and_answers"]:
                    user = f"{ex['context'].strip()[:300]}\n\n{qa['question'].strip()}"
                    knowledge.append(_row(user, qa["answer"], leaf, "knowledge"))
            elif ex.get("question") and ex.get("answer"):
                ctx = (ex.get("context") or "").strip()
                user = f"{ctx}\n\n{ex['question'].strip()}" if ctx else ex["question"].strip()
                skills.append(_row(user, ex["answer"], leaf, "skills"))
    return knowledge, skills


def _row(user: str, answer: str, leaf: str, phase: str) -> dict:
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": str(answer).strip()},
    ]
    kind = "knowledge" if phase == "knowledge" else "skill"
    return {"messages": messages, "metadata": {"leaf_id": leaf, "kind": kind, "phase": phase}}


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_sets(shared_data: Path, out_dir: Path, *, skills_replay: int = 0) -> tuple[Path, Path]:
    """knowledge.jsonl and skills.jsonl under out_dir; `skills_replay` knowledge rows are mixed into the skills
    set as the critique stage does (metadata.phase: knowledge_replay)."""
    knowledge, skills = _rows(shared_data)
    replay = [
        {**r, "metadata": {**r["metadata"], "phase": "knowledge_replay"}} for r in knowledge[:skills_replay]
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_jsonl(knowledge, out_dir / "knowledge.jsonl"), write_jsonl(
        skills + replay, out_dir / "skills.jsonl"
    )

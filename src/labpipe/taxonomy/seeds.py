"""Seed records: one JSON object per changed leaf, what synthetic generation consumes.

The schema is documented in src/labpipe/taxonomy/README.md. Knowledge leaves get their documents
fetched, converted to text and chunked by a token budget; a leaf whose documents cannot be fetched is
reported with the others (one bad leaf never hides another) and no record file is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.paths import DIFF_FILE, LEAVES_DIR
from labpipe.taxonomy.chunking import Counter, chunk_text
from labpipe.taxonomy.documents import DocumentRef, fetch_documents
from labpipe.taxonomy.validate import Leaf, validate_leaf


def _text(value: Any) -> str:
    return str(value).strip()


def seed_examples(leaf: Leaf) -> list[dict[str, str]]:
    """Skills: {question, answer[, context]} per example. Knowledge: every Q&A of every context, with it."""
    examples: list[dict[str, str]] = []
    for item in leaf.data["seed_examples"]:
        if leaf.kind == "knowledge":
            for qna in item["questions_and_answers"]:
                examples.append(
                    {
                        "question": _text(qna["question"]),
                        "answer": _text(qna["answer"]),
                        "context": _text(item["context"]),
                    }
                )
        else:
            example = {"question": _text(item["question"]), "answer": _text(item["answer"])}
            if leaf.kind == "grounded_skill":
                example["context"] = _text(item["context"])
            examples.append(example)
    return examples


def seed_record(leaf: Leaf, entry: dict[str, Any]) -> dict[str, Any]:
    """The record of one leaf, without documents and chunks (added for knowledge by knowledge_chunks)."""
    data = leaf.data
    record: dict[str, Any] = {
        "leaf_id": leaf.leaf_id,
        "kind": leaf.kind,
        "path": leaf.path,
        "status": entry.get("status", "added"),
        "version": leaf.version,
        "created_by": _text(data.get("created_by", "")),
    }
    if leaf.kind == "knowledge":
        record["domain"] = _text(data["domain"])
        record["document_outline"] = _text(data["document_outline"])
    else:
        record["task_description"] = _text(data.get("task_description", ""))
    record["seed_examples"] = seed_examples(leaf)
    record["leaf_digest"] = leaf.digest
    return record


def knowledge_chunks(
    leaf: Leaf, repo: str, budget: int, count: Counter
) -> tuple[dict, list[dict], list[Problem]]:
    """The `document` block (with the files read and the full commit id) and the chunks of a knowledge leaf."""
    doc = leaf.data["document"]
    ref = DocumentRef(
        repo=repo,
        commit=str(doc["commit"]),
        patterns=[str(p) for p in doc["patterns"]],
        where_repo=leaf.where("document", "repo"),
        where_commit=leaf.where("document", "commit"),
        where_patterns=leaf.where("document", "patterns"),
        leaf_id=leaf.leaf_id,
    )
    commit, documents, warnings = fetch_documents(ref)
    chunks = []
    for document in documents:
        for i, text in enumerate(chunk_text(document.text, budget, count)):
            chunks.append(
                {
                    "chunk_id": f"{leaf.leaf_id}/{document.path}#{i}",
                    "source": document.path,
                    "text": text,
                    "n_tokens": count(text),
                }
            )
    block = {
        "repo": str(doc["repo"]),
        "commit": commit,
        "patterns": ref.patterns,
        "files": [d.path for d in documents],
    }
    return block, chunks, warnings


def extract_seeds(
    diff_dir: str | Path, budget: int, count: Counter
) -> tuple[dict, list[dict], list[Problem]]:
    """Seed records for every changed leaf of a taxonomy-diff output directory, and the warnings."""
    diff_dir = Path(diff_dir)
    try:
        diff = json.loads((diff_dir / DIFF_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(
            Problem(
                where=str(diff_dir / DIFF_FILE),
                rule="diff-input",
                message=f"not a taxonomy-diff output ({exc})",
                fix="pass the directory written by `labpipe taxonomy diff` / the taxonomy_diff stage",
            )
        ) from None
    records: list[dict] = []
    problems: list[Problem] = []
    for entry in diff["leaves"]:
        if entry["status"] == "deleted":
            continue
        leaf, leaf_problems = validate_leaf(diff_dir / LEAVES_DIR, entry["path"])
        problems += leaf_problems
        if leaf is None:
            continue
        record = seed_record(leaf, entry)
        if leaf.kind == "knowledge":
            try:
                record["document"], record["chunks"], warnings = knowledge_chunks(
                    leaf, entry.get("document_repo") or str(leaf.data["document"]["repo"]), budget, count
                )
                problems += warnings
            except UserError as err:
                problems += err.problems
                continue
        record["taxonomy_commit"] = diff.get("head_commit", "")
        records.append(record)
    return diff, records, problems

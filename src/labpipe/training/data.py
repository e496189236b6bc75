"""Training data: messages JSONL -> validated samples -> token ids with loss labels.

A row is `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...], "metadata": {...}}`
(the critique stage's output). Loss masks:
- assistant-only (default): the tokens the chat template wraps in {% generation %}...{% endgeneration %};
- unmask_user (knowledge, continued pre-training style): every token after the system turn(s).
Samples longer than `max_length` are dropped or truncated (keep the start) by config, and counted.

Replay: the critique stage already mixes a knowledge replay into the skills set (metadata.phase ==
"knowledge_replay"). `mix_replay` adds one from an explicit --replay file instead; passing both is an error,
so the two never double up.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

from labpipe.errors import Problem, UserError

ROLES = ("system", "user", "assistant")
IGNORE = -100
REPLAY_PHASE = "knowledge_replay"


@dataclass
class Sample:
    messages: list[dict[str, str]]
    metadata: dict[str, Any]
    where: str  # file:line, for errors found later (e.g. while tokenizing)


@dataclass
class DataStats:
    samples: int = 0
    replay_samples: int = 0
    dropped_overlong: int = 0
    truncated_overlong: int = 0
    tokens: int = 0  # tokens in the kept samples
    trained_tokens: int = 0  # tokens with a loss label
    digests: dict[str, str] = field(default_factory=dict)  # uri -> sha256


def read_samples(uri: str) -> tuple[list[Sample], str]:
    """Read and validate a messages JSONL file; returns the samples and the file's sha256.

    Every malformed row is reported (file:line, field, rule), not just the first.
    """
    from labpipe import storage

    raw = storage.read_bytes(uri)
    digest = hashlib.sha256(raw).hexdigest()
    samples, problems = [], []
    for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        where = f"{uri}:{lineno}"
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(
                    f"{where}:{exc.colno}",
                    "json",
                    f"not valid JSON ({exc.msg})",
                    "write one JSON object per line",
                )
            )
            continue
        problems += _row_problems(row, where)
        if not problems:
            samples.append(Sample(row["messages"], dict(row.get("metadata") or {}), where))
    if problems:
        raise UserError(problems[:50])
    if not samples:
        raise UserError(
            Problem(uri, "empty-data", "no training rows", "pass a JSONL file with at least one row")
        )
    return samples, digest


def _row_problems(row: Any, where: str) -> list[Problem]:
    fix = 'each row: {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
        return [Problem(where, "messages", "row has no non-empty 'messages' list", fix, field="messages")]
    problems = []
    for i, msg in enumerate(row["messages"]):
        name = f"messages[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            problems.append(
                Problem(where, "role", f"role must be one of {', '.join(ROLES)}", fix, field=name)
            )
        elif not isinstance(msg.get("content"), str) or not msg["content"].strip():
            problems.append(Problem(where, "content", "content must be a non-empty string", fix, field=name))
    if not problems and not any(m["role"] == "assistant" for m in row["messages"]):
        problems.append(
            Problem(where, "assistant", "row has no assistant message to learn from", fix, field="messages")
        )
    if "metadata" in row and not isinstance(row["metadata"], dict):
        problems.append(
            Problem(
                where, "metadata", "metadata must be an object", "drop it or make it {}", field="metadata"
            )
        )
    return problems


def mix_replay(samples: list[Sample], replay: list[Sample], fraction: float, seed: int) -> list[Sample]:
    """Add round(fraction * len(samples)) knowledge rows drawn from `replay` (without replacement while it lasts)."""
    built_in = sum(s.metadata.get("phase") == REPLAY_PHASE for s in samples)
    if built_in:
        raise UserError(
            Problem(
                samples[0].where.rsplit(":", 1)[0],
                "double-replay",
                f"the skills data already holds {built_in} knowledge replay rows (metadata.phase: "
                f"{REPLAY_PHASE}) and --replay adds more",
                "drop --replay (the critique stage's replay is used) or pass skills data without replay rows",
            )
        )
    want = round(fraction * len(samples))
    rng = random.Random(seed)
    picked: list[Sample] = []
    while len(picked) < want and replay:
        picked += rng.sample(replay, min(len(replay), want - len(picked)))
    for s in picked:
        s.metadata = {**s.metadata, "phase": REPLAY_PHASE}
    return samples + picked


def check_chat_template(tokenizer, *, assistant_only: bool, where: str) -> None:
    template = tokenizer.chat_template
    if not template:
        raise UserError(
            Problem(
                where,
                "chat-template",
                "the model's tokenizer has no chat template",
                "pass --chat-template FILE.jinja",
            )
        )
    if assistant_only and "{% generation %}" not in template.replace("{%- generation %}", "{% generation %}"):
        raise UserError(
            Problem(
                where,
                "chat-template",
                "the chat template has no {% generation %} markers, so "
                "assistant-only loss cannot find the assistant tokens",
                "pass --chat-template FILE.jinja whose assistant content is wrapped in "
                "{% generation %}...{% endgeneration %}, or set unmask_user: true",
            )
        )


def tokenize(tokenizer, messages: list[dict[str, str]], *, unmask_user: bool) -> tuple[list[int], list[int]]:
    """Token ids and labels (IGNORE where there is no loss) of one conversation under the chat template."""
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=not unmask_user
    )
    ids = list(enc["input_ids"])
    if not unmask_user:
        mask = enc["assistant_masks"]
        return ids, [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]
    # Everything after the system turn(s) is trained: find where they end in the rendered text.
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    n_system = next((i for i, m in enumerate(messages) if m["role"] != "system"), len(messages))
    system_end = 0
    if n_system:
        prefix = tokenizer.apply_chat_template(messages[:n_system], tokenize=False)
        system_end = len(prefix) if text.startswith(prefix) else 0
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(offsets["input_ids"]) != ids:
        raise UserError(
            "the chat template tokenizes differently rendered and direct; unmask_user needs them equal",
            fix="set unmask_user: false for this model",
        )
    return ids, [
        t if start >= system_end else IGNORE
        for t, (start, _) in zip(ids, offsets["offset_mapping"], strict=True)
    ]


def build_rows(
    tokenizer, samples: list[Sample], *, max_length: int, overlong: str, unmask_user: bool, stats: DataStats
) -> list[dict[str, list[int]]]:
    """Tokenize every sample under the length policy; fills `stats`."""
    rows = []
    for s in samples:
        ids, labels = tokenize(tokenizer, s.messages, unmask_user=unmask_user)
        if len(ids) > max_length:
            if overlong == "drop":
                stats.dropped_overlong += 1
                continue
            ids, labels = ids[:max_length], labels[:max_length]
            stats.truncated_overlong += 1
        if all(
            lbl == IGNORE for lbl in labels[1:]
        ):  # nothing left to learn (e.g. truncated before the answer)
            stats.dropped_overlong += 1
            continue
        rows.append({"input_ids": ids, "labels": labels})
        stats.samples += 1
        stats.replay_samples += s.metadata.get("phase") == REPLAY_PHASE
        stats.tokens += len(ids)
        stats.trained_tokens += sum(lbl != IGNORE for lbl in labels)
    if not rows:
        raise UserError(
            Problem(
                samples[0].where.rsplit(":", 1)[0],
                "max-length",
                f"every sample is longer than max_length {max_length} or has nothing to train on",
                "raise max_length or set overlong: truncate",
            )
        )
    return rows


def to_dataset(rows: list[dict[str, list[int]]]):
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]}
    )

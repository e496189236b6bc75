"""Critique profiles (profiles/<name>.yaml): thresholds, length limits, dedup and replay settings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from labpipe.errors import Problem, UserError

PROFILES_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class Profile:
    name: str
    flow_thresholds: bool = True  # apply each judge step's `threshold` from its flow
    thresholds: dict[str, float | None] = field(default_factory=dict)  # step -> min score (None: keep all)
    min_question_chars: int = 10
    max_question_chars: int = 2000
    min_answer_chars: int = 2
    max_answer_chars: int = 8000
    dedup_threshold: float = 0.85  # >= 1.0: exact duplicates only
    knowledge_replay_ratio: float = 0.2  # knowledge replay in the skills set, as a share of the knowledge set

    def threshold(self, step) -> float | None:
        if step.name in self.thresholds:
            return self.thresholds[step.name]
        return step.threshold if self.flow_thresholds else None


def load_profile(name_or_path: str) -> Profile:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(p.stem for p in sorted(PROFILES_DIR.glob("*.yaml")))
        raise UserError(
            Problem(
                str(path),
                "profile-missing",
                f"critique profile {name_or_path!r} not found",
                f"use one of {shipped} or a path to a profile YAML",
            )
        )
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {f.name for f in fields(Profile)}
    problems = [
        Problem(
            str(path), "unknown-key", f"unknown key {k!r}", f"allowed: {', '.join(sorted(known))}", field=k
        )
        for k in raw
        if k not in known
    ]
    if not isinstance(raw.get("thresholds", {}), dict):
        problems.append(
            Problem(str(path), "type", "thresholds must map step names to numbers", field="thresholds")
        )
    if problems:
        raise UserError(problems)
    raw.setdefault("name", path.stem)
    return Profile(**raw)

"""Scores exactly as the reference computes them (fastchat/llm_judge/show_result.py, single mode).

Rows with score == -1 are dropped; turn 1 and turn 2 are the means of their rows; the overall score is the
mean of all remaining rows pooled (not the mean of the two turn means). Duplicated (question, turn) rows,
which appear when a file was re-judged and appended to, are counted as the reference counts them: every
row. Per-category scores pool both turns of the category's questions, as FastChat's category plots do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from labpipe.evaluation.fastchat_io import Judgment
from labpipe.evaluation.ratings import NO_RATING


@dataclass
class ModelScores:
    model: str
    overall: float | None
    turn1: float | None
    turn2: float | None
    categories: dict[str, float] = field(default_factory=dict)
    judged: int = 0  # rows that count
    excluded: int = 0  # rows with score -1 (no rating or a failed judge call)

    @property
    def failed_share(self) -> float:
        total = self.judged + self.excluded
        return self.excluded / total if total else 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(
    judgments: Iterable[Judgment], categories: Mapping[int | str, str] | None = None
) -> dict[str, ModelScores]:
    """Per model: overall, per-turn and (given question_id -> category) per-category means."""
    per_turn: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    per_cat: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    excluded: dict[str, int] = defaultdict(int)
    models: list[str] = []
    for j in judgments:
        if j.model not in models:
            models.append(j.model)
        if j.score == NO_RATING:
            excluded[j.model] += 1
            continue
        per_turn[j.model][j.turn].append(j.score)
        if categories and j.question_id in categories:
            per_cat[j.model][categories[j.question_id]].append(j.score)
    out = {}
    for model in models:
        turns = per_turn[model]
        pooled = [s for scores in turns.values() for s in scores]
        out[model] = ModelScores(
            model=model,
            overall=_mean(pooled),
            turn1=_mean(turns.get(1, [])),
            turn2=_mean(turns.get(2, [])),
            categories={c: _mean(v) for c, v in sorted(per_cat[model].items())},
            judged=len(pooled),
            excluded=excluded[model],
        )
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def format_table(scores: Mapping[str, ModelScores]) -> str:
    """A plain-text table like show_result's, one row per model, best overall first."""
    ranked = sorted(scores.values(), key=lambda s: -1 if s.overall is None else s.overall, reverse=True)
    width = max([len("model"), *(len(s.model) for s in ranked)])
    lines = [
        f"{'model':<{width}}  {'turn 1':>9}  {'turn 2':>9}  {'overall':>9}  {'judged':>6}  {'excluded':>8}"
    ]
    for s in ranked:
        lines.append(
            f"{s.model:<{width}}  {_fmt(s.turn1):>9}  {_fmt(s.turn2):>9}  {_fmt(s.overall):>9}  "
            f"{s.judged:>6}  {s.excluded:>8}"
        )
    cats = sorted({c for s in ranked for c in s.categories})
    if cats:
        widths = [max(9, len(s.model)) for s in ranked]
        lines += [
            "",
            f"{'category':<12}" + "".join(f"  {s.model:>{w}}" for s, w in zip(ranked, widths, strict=True)),
        ]
        for c in cats:
            cells = (f"  {_fmt(s.categories.get(c)):>{w}}" for s, w in zip(ranked, widths, strict=True))
            lines.append(f"{c:<12}" + "".join(cells))
    return "\n".join(lines)

"""The evaluation report: Markdown and self-contained HTML (chart embedded), plus the chart as a PNG.

Overall, per-turn and per-category scores for candidate vs base (and production when known), a chart per
category, and the largest regressions with the judge's rationale, so a person sees why a score moved.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from labpipe.evaluation.fastchat_io import Judgment
from labpipe.evaluation.questions import Question


@dataclass
class Regression:
    question_id: int | str
    category: str
    turn: int
    question: str
    candidate_score: float
    base_score: float
    rationale: str

    @property
    def delta(self) -> float:
        return self.candidate_score - self.base_score


def regressions(
    judgments: list[Judgment], questions: list[Question], candidate: str, base: str, limit: int = 5
) -> list[Regression]:
    """The (question, turn) pairs where the candidate scored lowest relative to the base, worst first."""
    by_qid = {q.question_id: q for q in questions}
    scored = {(j.model, j.question_id, j.turn): j for j in judgments if j.score != -1}
    found = []
    for (model, qid, turn), j in scored.items():
        other = scored.get((base, qid, turn))
        if model != candidate or other is None or j.score >= other.score:
            continue
        q = by_qid[qid]
        found.append(Regression(qid, q.category, turn, q.turns[turn - 1], j.score, other.score, j.judgment))
    return sorted(found, key=lambda r: (r.delta, str(r.question_id), r.turn))[:limit]


def category_chart(scores: dict[str, dict], out: Path) -> Path:
    """A grouped bar chart of per-category scores, one bar per model (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = sorted({c for s in scores.values() for c in s.get("categories", {})})
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(categories) + 2), 3.6), dpi=100)
    width = 0.8 / max(1, len(scores))
    for i, (label, s) in enumerate(scores.items()):
        values = [s.get("categories", {}).get(c) or 0.0 for c in categories]
        ax.bar([x + i * width for x in range(len(categories))], values, width, label=label)
    ax.set_xticks(
        [x + width * (len(scores) - 1) / 2 for x in range(len(categories))], categories, rotation=30
    )
    ax.set_ylim(0, 10)
    ax.set_ylabel("MT-Bench score (1-10)")
    ax.set_title("MT-Bench per category")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render_markdown(summary: dict, scores: dict[str, dict], regs: list[Regression], chart_name: str) -> str:
    lines = ["# MT-Bench report", ""]
    status = "INVALID (too many failed judgments; not scored)" if summary["invalid"] else "valid"
    lines += [
        f"- Judge: `{summary['judge']}` ({summary['judge_mode']} prompts)",
        f"- Questions: {summary['questions']} (sha256 `{summary['questions_sha256'][:16]}...`)",
        f"- Excluded judgments: {summary['excluded']} {dict(summary['excluded_reasons'])} - evaluation {status}",
        "",
        "## Scores",
        "",
        "| model | overall | turn 1 | turn 2 | judged | excluded |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, s in scores.items():
        lines.append(
            f"| {label} | {_f(s.get('overall'))} | {_f(s.get('turn1'))} | {_f(s.get('turn2'))} "
            f"| {s.get('judged', '')} | {s.get('excluded', '')} |"
        )
    categories = sorted({c for s in scores.values() for c in s.get("categories", {})})
    if categories:
        lines += [
            "",
            "## Per category",
            "",
            "| category | " + " | ".join(scores) + " |",
            "|---|" + "---:|" * len(scores),
        ]
        for c in categories:
            lines.append(
                f"| {c} | " + " | ".join(_f(s.get("categories", {}).get(c)) for s in scores.values()) + " |"
            )
        lines += ["", f"![per-category scores]({chart_name})"]
    lines += ["", "## Largest regressions (candidate below base)", ""]
    if not regs:
        lines.append("None: the candidate scored at least as well as the base on every judged turn.")
    for r in regs:
        rationale = " ".join(r.rationale.split())[:600]
        lines += [
            f"### Question {r.question_id}, turn {r.turn} ({r.category}): "
            f"{_f(r.candidate_score)} vs {_f(r.base_score)} ({r.delta:+.1f})",
            "",
            f"> {' '.join(r.question.split())[:300]}",
            "",
            f"Judge's rationale: {rationale}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def render_html(markdown: str, chart_png: bytes, chart_name: str) -> str:
    """Minimal Markdown-to-HTML for the report's own constructs; the chart is embedded as base64."""
    out, table = [], []

    def flush_table():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-:")]
            cells = [[html.escape(c.strip()) for c in r.strip("|").split("|")] for r in rows]
            body = "".join(f"<tr>{''.join(f'<td>{c}</td>' for c in row)}</tr>" for row in cells[1:])
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        text = html.escape(line)
        if line.startswith("# "):
            out.append(f"<h1>{text[2:]}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{text[3:]}</h2>")
        elif line.startswith("### "):
            out.append(f"<h3>{text[4:]}</h3>")
        elif line.startswith("- "):
            out.append(f"<li>{text[2:]}</li>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{text[5:]}</blockquote>")
        elif line.startswith("!["):
            data = base64.b64encode(chart_png).decode()
            out.append(
                f'<img alt="per-category scores ({html.escape(chart_name)})" src="data:image/png;base64,{data}">'
            )
        elif line.strip():
            out.append(f"<p>{text}</p>")
    flush_table()
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}td:first-child{text-align:left}"
        "blockquote{color:#555;border-left:3px solid #ccc;padding-left:.6em}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>MT-Bench report</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


def write_report(
    out_dir: Path, summary: dict, scores: dict[str, dict], regs: list[Regression]
) -> dict[str, Path]:
    """Write report.md, report.html and categories.png into `out_dir`; returns their paths."""
    chart = category_chart(scores, out_dir / "categories.png")
    markdown = render_markdown(summary, scores, regs, chart.name)
    (out_dir / "report.md").write_text(markdown)
    (out_dir / "report.html").write_text(render_html(markdown, chart.read_bytes(), chart.name))
    return {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "chart": chart}

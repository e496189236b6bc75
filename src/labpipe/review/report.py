"""The review's outputs for people: one self-contained HTML page (the run report's style: inline CSS, no
script, nothing from the network) and a Markdown summary short enough for a pull-request comment."""

from __future__ import annotations

from html import escape
from typing import Any

from labpipe.runs.report.html import CSS, _fmt, _reasons

BADGE = {"pass": "ok", "warn": "warn", "fail": "bad"}
REVIEW_CSS = CSS + (
    ".badge.warn{background:#fef3c7;color:#92400e}.warn{color:#92400e;font-weight:600}th.v,td.v{white-space:nowrap}\n"
)
MD_ICON = {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail"}


def _badge(verdict: str) -> str:
    return f'<span class="badge {BADGE.get(verdict, "muted")}">{escape(verdict)}</span>'


def _short(commit: str) -> str:
    return commit[:12] if commit and commit != "empty" else commit or "—"


def _share(value: Any) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def to_html(doc: dict[str, Any]) -> str:
    t = doc["totals"]
    overall = "fail" if t["fail"] else "warn" if t["warn"] else "pass"

    def card(key: str, value: str, ident: str, cls: str = "") -> str:
        return f'<div class="card"><div class="k">{key}</div><div class="v {cls}" id="{ident}">{value}</div></div>'

    cards = (
        '<div class="cards">'
        + "".join(
            [
                card("pass", str(t["pass"]), "count-pass", "ok"),
                card("warn", str(t["warn"]), "count-warn", "warn"),
                card("fail", str(t["fail"]), "count-fail", "bad"),
                card(
                    "teacher requests",
                    f"{t['teacher_sent']} sent / {t['teacher_reused']} reused",
                    "teacher-requests",
                    "small",
                ),
                card("exit code", str(doc["exit_code"]), "exit-code"),
            ]
        )
        + "</div>"
    )
    rows = []
    for leaf in doc["leaves"]:
        sample = leaf.get("sample") or {}
        known = leaf.get("known") or {}
        cost = leaf.get("cost") or {}
        reasons = "".join(f"<li>{escape(r)}</li>" for r in leaf["reasons"])
        rows.append(
            f'<tr id="leaf-{escape(leaf["leaf_id"])}"><td class="leaf"><code>{escape(leaf["leaf_id"])}</code>'
            f'<br><span class="muted">{escape(leaf.get("kind") or "?")} · {escape(leaf["status"])}</span></td>'
            f'<td class="v">{_badge(leaf["verdict"])}</td><td class="reasons"><ul>{reasons}</ul></td>'
            f'<td class="n">{_fmt(sample.get("kept"))} / {_fmt(sample.get("generated"))}</td>'
            f'<td class="n">{_fmt(known.get("mean_score"))}</td>'
            f'<td class="n">{_fmt(cost.get("planned_teacher_requests"))}</td>'
            f'<td class="n">{_fmt(cost.get("planned_tokens"))}</td></tr>'
        )
    summary = (
        '<section id="verdicts"><h2>Verdict per leaf</h2><table><tr><th>leaf</th><th class="v">verdict</th><th>reasons</th>'
        '<th class="n">sample kept</th><th class="n">known (1-10)</th><th class="n">planned requests</th>'
        '<th class="n">planned tokens</th></tr>' + "".join(rows) + "</table></section>"
    )
    details = "".join(_leaf_details(leaf) for leaf in doc["leaves"])
    deleted = (
        '<section id="deleted"><h2>Deleted leaves</h2><ul>'
        + "".join(f"<li><code>{escape(d)}</code></li>" for d in doc["deleted"])
        + "</ul></section>"
        if doc.get("deleted")
        else ""
    )
    s = doc["settings"]
    title = f"Taxonomy review {doc['ref'] or 'work tree'}"
    return "\n".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{REVIEW_CSS}</style></head><body><main>",
            f'<h1>Taxonomy review <code id="review-ref">{escape(doc["ref"] or "work tree")}</code> '
            f'<span id="overall">{_badge(overall)}</span></h1>',
            f'<p class="sub">taxonomy <code>{escape(doc["taxonomy"])}</code> at <code>{_short(doc["head_commit"])}</code>'
            f" · base {escape(doc['base'])} = <code>{_short(doc['base_used'])}</code>"
            f"{' · ' + escape(doc['base_note']) if doc.get('base_note') else ''}"
            f" · teacher <code>{escape(s['teacher'] or '—')}</code> · judge <code>{escape(s['judge'] or '—')}</code>"
            f" · critique profile {escape(s['critique_profile'])} · {_fmt(t.get('wall_time_s'), 1)} s</p>",
            cards,
            summary,
            details,
            deleted,
            "</main></body></html>",
        ]
    )


def _leaf_details(leaf: dict[str, Any]) -> str:
    parts = [f"<h2>{_badge(leaf['verdict'])} <code>{escape(leaf['leaf_id'])}</code></h2>"]
    if leaf["problems"]:
        parts.append(
            '<h3>Validation</h3><table class="problems"><tr><th>where</th><th>rule</th><th>problem</th>'
            "<th>fix</th></tr>"
            + "".join(
                f"<tr><td><code>{escape(p['where'])}</code></td><td>{escape(p['rule'])}"
                f"{' [' + escape(p['field']) + ']' if p.get('field') else ''}</td>"
                f'<td class="{"bad" if p["severity"] == "error" else "muted"}">{escape(p["message"])}</td>'
                f"<td>{escape(p.get('fix') or '')}</td></tr>"
                for p in leaf["problems"]
            )
            + "</table>"
        )
    overlap = leaf.get("overlap") or {}
    if overlap:
        hits = [("near-duplicate", h) for h in overlap["near_duplicates"]] + [
            ("contradiction", h) for h in overlap["contradictions"]
        ]
        body = "".join(
            f"<tr><td>{kind}</td><td><code>{escape(h['seed'])}</code></td><td><code>{escape(h['of'])}"
            f"</code></td><td>{escape(h['question'])}</td></tr>"
            for kind, h in hits
        )
        parts.append(
            f"<h3>Overlap</h3><p>against {overlap['compared_leaves']} other leaves, near-duplicate threshold "
            f"{overlap['threshold']} (critique's measure): "
            + (
                f'<span class="warn">{len(hits)} finding(s)</span></p><table><tr><th>finding</th><th>seed</th>'
                f"<th>of</th><th>question</th></tr>{body}</table>"
                if hits
                else "none</p>"
            )
        )
    doc = leaf.get("document") or {}
    if doc:
        parts.append(
            "<h3>Document</h3><p>"
            + (
                f"<code>{escape(doc['repo'])}</code> @ <code>{escape(doc['commit'])}</code> resolves: "
                f"{len(doc['files'])} file(s), <b>{doc['chunks']} chunk(s)</b> of at most {doc['chunk_tokens']} tokens "
                f"({escape(str(doc['tokenizer']))}), {doc['tokens']} tokens in all"
                if doc.get("resolved")
                else f'<span class="bad">{escape(doc["repo"])} does not resolve</span>'
            )
            + "</p>"
        )
    sample = leaf.get("sample") or {}
    if sample:
        faith = sample.get("faithfulness")
        parts.append(
            f"<h3>Generation sample</h3><p>{sample['teacher_requests']} teacher requests "
            f"({sample['teacher_requests_sent']} sent, {sample['teacher_requests_reused']} reused) → "
            f"{sample['generated']} records → critique ({escape(str(sample.get('critique_profile', '—')))}) keeps "
            f"<b>{_fmt(sample.get('kept'))}</b> (yield {_share(sample.get('yield'))})"
            + (
                f"; faithfulness judge accepts {faith['accepted']} of {faith['judged']} questions "
                f"({_share(faith['share'])})"
                if faith
                else ""
            )
            + "</p>"
            + (
                f"<p>dropped in generation: {_reasons(sample['generation_dropped'])}</p>"
                if sample.get("generation_dropped")
                else ""
            )
            + (f"<p>dropped by critique: {_reasons(sample['dropped'])}</p>" if sample.get("dropped") else "")
        )
    known = leaf.get("known") or {}
    if known:
        parts.append(
            "<h3>Already known?</h3><p>"
            + (
                f"{escape(known['asked'])} answered {known['questions']} seed question(s); the judge scored "
                f"{known['scored']}: mean <b>{_fmt(known['mean_score'])}</b>/10 (already known from "
                f"{known['threshold']})"
                if known.get("asked")
                else escape(known.get("note", ""))
            )
            + "</p>"
        )
    cost = leaf.get("cost") or {}
    if cost:
        parts.append(
            f"<h3>Cost in the next run</h3><p>{cost['planned_teacher_requests']} planned teacher requests, about "
            f"{cost['planned_tokens']} tokens ({cost['tokens_per_request']} per request, measured on "
            f"{cost['measured_on']} sample requests)</p>"
        )
    return f'<section class="leaf-detail">{"".join(parts)}</section>'


def to_markdown(doc: dict[str, Any]) -> str:
    """A pull-request comment: one line of totals, one table row per leaf, the failing problems."""
    t = doc["totals"]
    lines = [
        f"### labpipe review of `{doc['ref'] or 'work tree'}` against {doc['base']} "
        f"(`{_short(doc['base_used'])}`)",
        "",
        f"**{t['pass']} pass, {t['warn']} warn, {t['fail']} fail** · exit code {doc['exit_code']} · "
        f"teacher requests {t['teacher_sent']} sent, {t['teacher_reused']} reused",
        "",
        "| leaf | verdict | sample kept | known | planned requests | reasons |",
        "|---|---|---:|---:|---:|---|",
    ]
    for leaf in doc["leaves"]:
        sample, known, cost = leaf.get("sample") or {}, leaf.get("known") or {}, leaf.get("cost") or {}
        kept = f"{sample['kept']}/{sample['generated']}" if "kept" in sample else "—"
        score = known.get("mean_score")
        lines.append(
            f"| `{leaf['leaf_id']}` | {MD_ICON[leaf['verdict']]} | {kept} | {'—' if score is None else score} | "
            f"{cost.get('planned_teacher_requests', '—')} | {_md('; '.join(leaf['reasons']))} |"
        )
    errors = [
        (leaf["leaf_id"], p) for leaf in doc["leaves"] for p in leaf["problems"] if p["severity"] == "error"
    ]
    if errors:
        lines += ["", "<details><summary>Problems to fix</summary>", ""]
        lines += [
            f"- `{p['where']}`: {p['message']}{' Fix: ' + p['fix'] if p.get('fix') else ''}"
            for _, p in errors[:20]
        ]
        if len(errors) > 20:
            lines.append(f"- … and {len(errors) - 20} more (review.html)")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:400]

"""The HTML of the run report: inline CSS and SVG only (no script, no fonts or images from the network).

Layout: one column at most 1100 px wide, tables that wrap long URIs and digests instead of widening the
page, `@media print` rules that drop the colour backgrounds and keep sections whole.
"""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING, Any

from labpipe.runs import stages

if TYPE_CHECKING:
    from labpipe.runs.lineage import Lineage
    from labpipe.runs.report import RunData

COLORS = {"candidate": "#2563eb", "base": "#9ca3af", "production": "#f59e0b"}
PHASE_COLORS = ["#2563eb", "#16a34a", "#9333ea", "#dc2626"]

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;margin:0;background:#f3f4f6}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:0 0 10px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 18px;margin:0 0 16px}
.sub{color:#6b7280;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:0 0 16px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 14px}
.card .k{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:600}
.card .v.small{font-size:16px;padding-top:6px;overflow-wrap:anywhere}
td.stage{white-space:nowrap;font-weight:600} td.leaf{min-width:190px;max-width:260px} td.reasons{min-width:220px}
td.leaf code{font-size:11px}
table{border-collapse:collapse;width:100%;table-layout:auto}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #f0f0f0;vertical-align:top;overflow-wrap:anywhere}
th{color:#374151;font-weight:600;background:#f9fafb}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ok{color:#15803d;font-weight:600} .bad{color:#b91c1c;font-weight:600} .muted{color:#6b7280}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.ok{background:#dcfce7} .badge.bad{background:#fee2e2} .badge.muted{background:#f3f4f6}
.bar{height:10px;background:#e5e7eb;border-radius:3px;position:relative;min-width:120px}
.bar span{position:absolute;top:0;bottom:0;background:#60a5fa;border-radius:3px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
.legend span{display:inline-block;margin-right:14px} .legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}
ul{margin:4px 0 0 18px;padding:0}
svg{max-width:100%;height:auto}
@media print{body{background:#fff}main{max-width:none;padding:0}section,.card{border-color:#ccc;break-inside:avoid}
 .bar span{background:#555}}
"""


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "—"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _status_badge(status: str) -> str:
    cls = "ok" if status in ("FINISHED", "done") else "bad" if status in ("FAILED", "KILLED", "failed") else "muted"
    status = {"FINISHED": "finished", "done": "done"}.get(status, status)
    return f'<span class="badge {cls}">{escape(status.lower())}</span>'


def render_html(data: RunData) -> str:
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>labpipe run {escape(data.pipeline_run_id)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>LAB pipeline run <code id=\"pipeline-run-id\">{escape(data.pipeline_run_id)}</code> "
        f"{_status_badge(data.status)}</h1>",
        f"<p class=\"sub\">MLflow run <code>{escape(data.mlflow_run_id)}</code> · started {_when(data.start_ms)}"
        f" · {_dur(((data.end_ms or 0) - (data.start_ms or 0)) / 1000 if data.end_ms else None)}"
        f" · tracking <code>{escape(data.tracking_uri)}</code></p>",
        _cards(data),
        _stages(data),
        _problems(data),
        _funnel(data),
        _losses(data),
        _scores(data),
        _branch(data),
        _gate(data),
        render_lineage(data.lineage),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _cards(data: RunData) -> str:
    def card(key: str, value: str, ident: str, cls: str = "") -> str:
        return f'<div class="card"><div class="k">{key}</div><div class="v {cls}" id="{ident}">{value}</div></div>'

    overall = {m: s.get("overall") for m, s in data.scores.items()}
    publish = data.decision.get("publish")
    gate = "—" if publish is None else "publish" if publish else "hold"
    totals = data.yield_report.get("totals", {})
    published = f"{escape(data.published['name'])} v{escape(data.published['version'])}" if data.published else "—"
    return "<div class=\"cards\">" + "".join([
        card("candidate score", _fmt(overall.get("candidate")), "score-candidate"),
        card("base score", _fmt(overall.get("base")), "score-base"),
        card("production score", _fmt(overall.get("production")) if overall.get("production") is not None
             else "none", "score-production"),
        card("gate", gate, "gate-decision", "ok" if publish else "bad" if publish is False else ""),
        card("examples kept", f"{_fmt(totals.get('kept'))} / {_fmt(totals.get('generated'))}", "kept-total"),
        card("published", published, "published-version", "small"),
    ]) + "</div>"


def _tasks(data: RunData) -> str:
    """The pipeline's tasks with the times and key figures `labpipe run` saw."""
    starts = [t["start_ms"] for t in data.tasks if t.get("start_ms")]
    t0 = min(starts) if starts else 0
    t1 = max([t.get("end_ms") or t.get("start_ms") or t0 for t in data.tasks] + [t0])
    span = max(t1 - t0, 1)
    rows = []
    for t in data.tasks:
        start, end = t.get("start_ms"), t.get("end_ms")
        took = (end - start) / 1000 if start and end else None
        bar = ""
        if start:
            left, width = (start - t0) / span * 100, max(((end or t1) - start) / span * 100, 0.8)
            bar = f"<div class=\"bar\"><span style=\"left:{left:.1f}%;width:{width:.1f}%\"></span></div>"
        rows.append(
            f"<tr><td class=\"stage\">{escape(t.get('label') or t['task'])}</td><td>{_status_badge(t['status'])}</td>"
            f"<td class=\"n\">{f'+{(start - t0) / 1000:.0f} s' if start else '—'}</td><td class=\"n\">{_dur(took)}</td>"
            f"<td>{escape(t.get('figure') or '')}</td><td style=\"width:22%\">{bar}</td></tr>")
    return ("<section id=\"stages\"><h2>Stages</h2><table><tr><th>stage</th><th>status</th><th class=\"n\">start"
            "</th><th class=\"n\">took</th><th>key figure</th><th>timeline</th></tr>" + "".join(rows) +
            "</table></section>")


def _stages(data: RunData) -> str:
    if data.tasks:
        return _tasks(data)
    if not data.stages:
        return "<section id=\"stages\"><h2>Stages</h2><p class=\"muted\">no stage recorded a run</p></section>"
    t0 = min(s.start_ms for s in data.stages if s.start_ms) or 0
    t1 = max((s.end_ms or s.start_ms or t0) for s in data.stages) or t0
    span = max(t1 - t0, 1)
    rows = []
    for s in data.stages:
        left = ((s.start_ms or t0) - t0) / span * 100
        width = max(((s.end_ms or t1) - (s.start_ms or t0)) / span * 100, 0.8)
        rows.append(
            f"<tr><td class=\"stage\" title=\"{escape(stages.title(s.name))}\">{escape(s.name)}</td>"
            f"<td>{_status_badge(s.status)}</td>"
            f"<td class=\"n\">+{((s.start_ms or t0) - t0) / 1000:.0f} s</td><td class=\"n\">{_dur(s.seconds)}</td>"
            f"<td style=\"width:40%\"><div class=\"bar\"><span style=\"left:{left:.1f}%;width:{width:.1f}%\">"
            f"</span></div></td></tr>")
    return ("<section id=\"stages\"><h2>Stages</h2><table><tr><th>stage</th><th>status</th><th class=\"n\">start"
            "</th><th class=\"n\">took</th><th>timeline</th></tr>" + "".join(rows) + "</table></section>")


def _problems(data: RunData) -> str:
    """Why stages failed, and the requests that failed for good in stages that went on (tolerated)."""
    items = []
    seen: set[str] = set()
    for s in data.stages:
        if s.error and s.error not in seen:  # a retried task fails with the same problems: say them once
            seen.add(s.error)
            items.append(f"<li><b>{escape(s.name)}</b> failed: <pre>{escape(s.error)}</pre></li>")
        f = s.failures
        if f.get("failed") and s.status == "FINISHED":
            reasons = "".join(f"<li>{r.get('count')} {escape(kind)}: <code>{escape(_short(str(r.get('example', '')), 300))}"
                              f"</code></li>" for kind, r in (f.get("reasons") or {}).items())
            items.append(f"<li><b>{escape(s.name)}</b>: {f['failed']} of {f.get('total', '?')} requests failed for "
                         f"good, tolerated (allowed: {_fmt(100 * float(f.get('allowed_share') or 0), 0)}%)"
                         f"<ul>{reasons}</ul></li>")
    if not items:
        return ""
    return f"<section id=\"problems\"><h2>Failures</h2><ul>{''.join(items)}</ul></section>"


def _reasons(dropped: dict[str, Any]) -> str:
    """`{filter: n}` or `{filter: {reason: n}}` as 'filter: reason n, ...'."""
    parts = []
    for key, value in dropped.items():
        if isinstance(value, dict):
            parts += [f"{escape(str(key))}: {escape(str(k))} {escape(str(v))}" for k, v in value.items()]
        else:
            parts.append(f"{escape(str(key))}: {escape(str(value))}")
    return "<br>".join(parts) or "—"


def _funnel(data: RunData) -> str:
    report = data.yield_report
    if not report:
        return "<section id=\"funnel\"><h2>Data funnel</h2><p class=\"muted\">no critique report recorded</p></section>"
    rows = []
    for leaf, info in report.get("leaves", {}).items():
        steps = info.get("generation") or []
        seeds = steps[0]["in"] if steps else None
        chain = " → ".join(f"{escape(s['step'])} {s['out']}" for s in steps)
        gen_dropped = {f"{s['step']}: {k}": v for s in steps for k, v in (s.get("dropped") or {}).items()}
        if gen_dropped:
            chain += f"<br><span class=\"muted\">dropped: {_reasons(gen_dropped)}</span>"
        generated, kept = info.get("generated", 0), info.get("kept", 0)
        pct = kept / generated * 100 if generated else 0
        rows.append(
            f"<tr><td class=\"leaf\"><code>{escape(leaf)}</code><br><span class=\"muted\">{escape(str(info.get('kind', '')))}"
            f"</span></td><td class=\"n\">{_fmt(seeds)}</td><td>{chain or '—'}</td>"
            f"<td class=\"n\">{generated}</td>"
            f"<td class=\"reasons\">{_reasons(info.get('dropped') or {})}</td><td class=\"n\">{kept}</td>"
            f"<td style=\"width:14%\"><div class=\"bar\"><span style=\"left:0;width:{pct:.0f}%\"></span></div>"
            f"<span class=\"muted\">{pct:.0f}%</span></td></tr>")
    filters = "".join(
        f"<tr><td>{escape(name)}</td><td class=\"n\">{f.get('checked', 0)}</td><td class=\"n\">{f.get('dropped', 0)}"
        f"</td><td>{_reasons(f.get('reasons') or {})}</td></tr>" for name, f in report.get("filters", {}).items())
    totals = report.get("totals", {})
    return (
        "<section id=\"funnel\"><h2>Data funnel per leaf</h2>"
        f"<p>{_fmt(totals.get('generated'))} generated, <b>{_fmt(totals.get('kept'))} kept</b> "
        f"(yield {_fmt((totals.get('yield') or 0) * 100, 0)}%): knowledge set {_fmt(totals.get('knowledge_set'))},"
        f" skills set {_fmt(totals.get('skills_set'))}, knowledge replay {_fmt(totals.get('knowledge_replay'))}."
        "</p><table><tr><th>leaf</th><th class=\"n\">seed items</th><th>generation steps (out)</th>"
        "<th class=\"n\">generated</th><th>dropped by filters</th>"
        "<th class=\"n\">kept</th><th>yield</th></tr>" + "".join(rows) + "</table>"
        "<h2 style=\"margin-top:14px\">What each filter removed</h2><table><tr><th>filter</th>"
        "<th class=\"n\">checked</th><th class=\"n\">dropped</th><th>reasons</th></tr>" + filters + "</table></section>")


def _line_chart(points: list[tuple[int, float]], color: str, width: int = 460, height: int = 180) -> str:
    pad_l, pad_b, pad_t, pad_r = 44, 24, 10, 10
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(values), max(values)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def x(s: float) -> float:
        return pad_l + (s - x0) / max(x1 - x0, 1) * (width - pad_l - pad_r)

    def y(v: float) -> float:
        return pad_t + (y1 - v) / (y1 - y0) * (height - pad_t - pad_b)

    line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    dots = "".join(f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>' for s, v in points)
    axis = (f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" stroke="#9ca3af"/>'
            f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#9ca3af"/>'
            f'<text x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end" font-size="10">{y1:.2f}</text>'
            f'<text x="{pad_l - 4}" y="{height - pad_b}" text-anchor="end" font-size="10">{y0:.2f}</text>'
            f'<text x="{pad_l}" y="{height - 8}" font-size="10">step {x0}</text>'
            f'<text x="{width - pad_r}" y="{height - 8}" text-anchor="end" font-size="10">step {x1}</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">{axis}'
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{line}"/>{dots}</svg>')


def _losses(data: RunData) -> str:
    if not data.losses:
        return "<section id=\"losses\"><h2>Training loss</h2><p class=\"muted\">no training loss recorded</p></section>"
    charts = []
    for i, (phase, points) in enumerate(data.losses.items()):
        first, last = points[0][1], points[-1][1]
        charts.append(
            f"<div><b>{escape(phase)}</b> <span class=\"muted\">{len(points)} logged steps, loss "
            f"<span id=\"loss-{escape(phase)}\">{first:.3f} → {last:.3f}</span></span><br>"
            f"{_line_chart(points, PHASE_COLORS[i % len(PHASE_COLORS)])}</div>")
    return "<section id=\"losses\"><h2>Training loss per phase</h2><div class=\"charts\">" + "".join(charts) + \
        "</div></section>"


def _bar_chart(categories: list[str], scores: dict[str, dict[str, float]], models: list[str]) -> str:
    row_h, bar_h, label_w, width = 14 * len(models) + 10, 12, 110, 560
    height = row_h * len(categories) + 24
    scale = (width - label_w - 40) / 10  # MT-Bench scores are 1..10
    out = []
    for i, cat in enumerate(categories):
        top = i * row_h + 4
        out.append(f'<text x="{label_w - 6}" y="{top + row_h / 2 + 2}" text-anchor="end" font-size="11">'
                   f'{escape(cat)}</text>')
        for j, model in enumerate(models):
            value = scores.get(model, {}).get(cat)
            if value is None:
                continue
            y = top + j * 14
            out.append(f'<rect x="{label_w}" y="{y}" width="{max(value, 0) * scale:.1f}" height="{bar_h}" '
                       f'fill="{COLORS.get(model, "#64748b")}"/><text x="{label_w + max(value, 0) * scale + 4:.1f}" '
                       f'y="{y + 10}" font-size="10">{value:.2f}</text>')
    for tick in range(0, 11, 2):
        x = label_w + tick * scale
        out.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 18}" stroke="#f0f0f0"/>'
                   f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" font-size="10">{tick}</text>')
    return f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">{"".join(out)}</svg>'


def _scores(data: RunData) -> str:
    if not data.scores:
        return "<section id=\"mt-bench\"><h2>MT-Bench</h2><p class=\"muted\">no MT-Bench scores recorded</p></section>"
    models = [m for m in ("candidate", "base", "production") if m in data.scores] + \
        sorted(m for m in data.scores if m not in ("candidate", "base", "production"))
    cats = sorted({k.removeprefix("category.") for s in data.scores.values() for k in s if k.startswith("category.")})
    by_cat = {m: {c: data.scores[m].get(f"category.{c}") for c in cats} for m in models}
    head = "".join(f"<th class=\"n\">{escape(m)}</th>" for m in models)
    rows = []
    for label, key in [("overall", "overall"), ("turn 1", "turn1"), ("turn 2", "turn2")] + \
            [(c, f"category.{c}") for c in cats]:
        cells = "".join(f"<td class=\"n\" data-model=\"{escape(m)}\" data-key=\"{escape(key)}\">"
                        f"{_fmt(data.scores[m].get(key))}</td>" for m in models)
        rows.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
    legend = "".join(f'<span><i style="background:{COLORS.get(m, "#64748b")}"></i>{escape(m)}</span>' for m in models)
    note = "" if "production" not in data.scores or len(data.scores["production"]) > 1 else \
        "<p class=\"muted\">The production model is known by its recorded overall score only.</p>"
    return (f"<section id=\"mt-bench\"><h2>MT-Bench per category</h2><div class=\"charts\"><div><table><tr>"
            f"<th>score</th>{head}</tr>{''.join(rows)}</table>{note}</div><div><div class=\"legend\">{legend}</div>"
            f"{_bar_chart(cats, by_cat, models) if cats else ''}</div></div></section>")


def _branch(data: RunData) -> str:
    """Branch evaluation (labpipe.evaluation.branch's branch.json): per leaf, improved / regressed / new."""
    b = data.branch
    if not b:
        return ("<section id=\"branch\"><h2>Branch evaluation</h2><p class=\"muted\">not part of this pipeline run "
                "(<code>labpipe evaluate branch</code> judges the changed leaves' own seed questions)</p></section>")
    kinds = ("improvements", "regressions", "new", "unchanged", "excluded")
    per_leaf: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        for row in b.get(kind) or []:
            leaf = per_leaf.setdefault(row.get("leaf", "?"), {k: 0 for k in kinds} | {"c": [], "b": []})
            leaf[kind] += 1
            if row.get("candidate") is not None and row.get("base") is not None:
                leaf["c"].append(row["candidate"])
                leaf["b"].append(row["base"])

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    rows = "".join(
        f"<tr><td class=\"leaf\"><code>{escape(leaf)}</code></td>"
        + "".join(f"<td class=\"n\">{v[k]}</td>" for k in kinds[:4])
        + f"<td class=\"n\">{_fmt(mean(v['b']))}</td><td class=\"n\">{_fmt(mean(v['c']))}</td></tr>"
        for leaf, v in sorted(per_leaf.items()))
    counts = ", ".join(f"{k}: {len(b.get(k) or [])}" for k in kinds[:3])
    return (f"<section id=\"branch\"><h2>Branch evaluation</h2><p>{escape(counts)}</p><table><tr><th>leaf</th>"
            "<th class=\"n\">improved</th><th class=\"n\">regressed</th><th class=\"n\">new</th>"
            "<th class=\"n\">unchanged</th><th class=\"n\">base mean</th><th class=\"n\">candidate mean</th></tr>"
            f"{rows}</table></section>")


def _gate(data: RunData) -> str:
    d = data.decision
    if not d:
        return "<section id=\"gate\"><h2>Gate</h2><p class=\"muted\">no gate decision recorded</p></section>"
    verdict = '<span class="badge ok">publish</span>' if d.get("publish") else '<span class="badge bad">hold</span>'
    reasons = "".join(f"<li>{escape(str(r))}</li>" for r in d.get("reasons") or [])
    pub = data.published
    published = (f"<p>Published <b>{escape(pub['name'])}</b> version <b>{escape(pub['version'])}</b> "
                 f"as <code>{escape(pub['name'])}@{escape(pub['alias'] or 'production')}</code>.</p>") if pub else \
        "<p class=\"muted\">Nothing was published by this run.</p>"
    return f"<section id=\"gate\"><h2>Gate decision {verdict}</h2><ul>{reasons}</ul>{published}</section>"


DIGEST_HINTS = ("sha256", "commit", "digest", "version", "mlflow_run_id")


def render_lineage(lineage: Lineage | None) -> str:
    """The lineage chain: per stage, what it consumed, what it produced, and the digests that pin them.

    Today it reads the `lineage.<stage>.*` tags that labpipe.runs.lineage.describe returns; a richer chain
    object can replace the argument without touching the rest of the page.
    """
    if lineage is None or not lineage.stages:
        return "<section id=\"lineage\"><h2>Lineage</h2><p class=\"muted\">no lineage recorded</p></section>"
    import posixpath

    produced = [v for tags in lineage.stages.values() for k, v in tags.items()
                if k.startswith("outputs.") and (v.startswith("/") or v.startswith("s3://"))]
    root = posixpath.commonpath(produced) if len(produced) > 1 and len({p[:5] for p in produced}) == 1 else ""
    root = root if root.count("/") >= 3 else ""

    def short(value: str) -> str:
        return "…" + value[len(root):] if root and value.startswith(root + "/") else value

    rows = []
    for stage in sorted(lineage.stages, key=stages.order):
        tags = lineage.stages[stage]
        ins = [(k[7:], v) for k, v in tags.items() if k.startswith("inputs.") and v]
        outs = [(k[8:], v) for k, v in tags.items() if k.startswith("outputs.") and v]
        pins = [(k[9:].split(".", 1)[0], v) for k, v in tags.items()
                if k.startswith("metadata.") and any(h in k for h in DIGEST_HINTS) and v]

        def cell(items: list[tuple[str, str]]) -> str:
            return "<br>".join(f"<span class=\"muted\">{escape(k)}</span> <code>{escape(_short(short(v)))}</code>"
                               for k, v in items) or "—"

        rows.append(f"<tr><td class=\"stage\" title=\"{escape(stages.title(stage))}\">{escape(stage)}</td>"
                    f"<td>{cell(ins)}</td><td>{cell(outs)}</td>"
                    f"<td>{cell(pins)}</td></tr>")
    note = f"<p class=\"muted\">… stands for <code>{escape(root)}</code></p>" if root else ""
    return (f"<section id=\"lineage\"><h2>Lineage chain</h2>{note}<table><tr><th>stage</th><th>consumed</th>"
            "<th>produced</th><th>digests and versions</th></tr>" + "".join(rows) + "</table></section>")


def _short(value: str, limit: int = 120) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"

"""The yield ledger and report: per leaf and per filter, what was kept, what was dropped and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ledger:
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> checked, dropped, reasons
    leaves: dict[str, dict[str, Any]] = field(default_factory=dict)

    def leaf(self, leaf_id: str, kind: str = "") -> dict[str, Any]:
        return self.leaves.setdefault(
            leaf_id, {"kind": kind, "generated": 0, "kept": 0, "sampled": 0, "dropped": {}, "generation": []}
        )

    def checked(self, name: str, n: int) -> None:
        f = self.filters.setdefault(name, {"checked": 0, "dropped": 0, "reasons": Counter()})
        f["checked"] += n

    def drop(self, name: str, rec: dict[str, Any], reason: str) -> None:
        f = self.filters.setdefault(name, {"checked": 0, "dropped": 0, "reasons": Counter()})
        f["dropped"] += 1
        f["reasons"][reason] += 1
        leaf = self.leaf(rec["leaf_id"], rec.get("kind", ""))
        leaf["dropped"].setdefault(name, Counter())[reason] += 1

    def summary(self) -> str:
        """One line on which filters removed what (for errors)."""
        parts = [
            f"{name} removed {f['dropped']}/{f['checked']}"
            + (f" ({_top(f['reasons'])})" if f["dropped"] else "")
            for name, f in self.filters.items()
        ]
        return "; ".join(parts) or "no filter ran"


def _top(reasons: Counter, n: int = 2) -> str:
    return ", ".join(f"{count}x {why}" for why, count in reasons.most_common(n))


def yield_report(ledger: Ledger, totals: dict[str, Any]) -> dict[str, Any]:
    leaves = {}
    for leaf_id, leaf in sorted(ledger.leaves.items()):
        entry = {**leaf, "dropped": {k: dict(v) for k, v in leaf["dropped"].items()}}
        if leaf["kept"] == 0:
            entry["note"] = "yielded nothing: " + _why_nothing(leaf)
        leaves[leaf_id] = entry
    filters = {
        name: {**f, "reasons": dict(f["reasons"]), "kept": f["checked"] - f["dropped"]}
        for name, f in ledger.filters.items()
    }
    return {"totals": totals, "filters": filters, "leaves": leaves}


def _why_nothing(leaf: dict[str, Any]) -> str:
    if leaf["generated"] == 0:
        gen = [f"{s['step']}: {_fmt(s['dropped'])}" for s in leaf.get("generation", []) if s.get("dropped")]
        return "generation produced no records" + (f" ({'; '.join(gen)})" if gen else "")
    return "; ".join(f"{name}: {_fmt(reasons)}" for name, reasons in leaf["dropped"].items())


def _fmt(reasons: dict[str, int]) -> str:
    return ", ".join(f"{n}x {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))


def to_markdown(report: dict[str, Any]) -> str:
    t = report["totals"]
    lines = [
        "# Critique yield report",
        "",
        f"Profile **{t['profile']}**: {t['generated']} generated records, {t['kept']} kept "
        f"({t['yield']:.0%}). Knowledge set: {t['knowledge_set']} examples; skills set: {t['skills_set']} "
        f"examples ({t['knowledge_replay']} of them knowledge replay). Judge requests sent: {t['judge_requests_sent']}, "
        f"reused from generation or checkpoints: {t['judge_scores_reused']}.",
        "",
        "## Per filter",
        "",
        "| filter | checked | kept | dropped | top reasons |",
        "|---|---:|---:|---:|---|",
    ]
    for name, f in report["filters"].items():
        lines.append(
            f"| {name} | {f['checked']} | {f['kept']} | {f['dropped']} | {_md(_fmt(f['reasons']))} |"
        )
    lines += [
        "",
        "## Per leaf",
        "",
        "| leaf | kind | generated | kept | in training set | dropped (filter: count) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for leaf_id, leaf in report["leaves"].items():
        dropped = ", ".join(f"{k}: {sum(v.values())}" for k, v in leaf["dropped"].items()) or "-"
        lines.append(
            f"| {_md(leaf_id)} | {leaf['kind']} | {leaf['generated']} | {leaf['kept']} | {leaf['sampled']} | {dropped} |"
        )
    failures = report.get("failures") or {}
    if failures.get("failed"):
        lines += ["", "## Judge requests that failed for good", "",
                  f"{failures['failed']} of {failures['total']} (allowed: {failures['allowed_share']:.0%}); "
                  "their records were dropped. A rerun with the same output resends only these.", ""]  # fmt: skip
        lines += [
            f"- {r['count']} {kind}: {_md(r['example'][:300])}" for kind, r in failures["reasons"].items()
        ]
    notes = [(leaf_id, leaf["note"]) for leaf_id, leaf in report["leaves"].items() if "note" in leaf]
    if notes:
        lines += ["", "## Leaves that yielded nothing", ""]
        lines += [f"- `{leaf_id}`: {_md(note)}" for leaf_id, note in notes]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

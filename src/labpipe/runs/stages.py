"""The one table of the pipeline's stages: what each is called where, and the key figure shown for it.

A stage has one name (`StageDef.name`): the name of its MLflow stage run and of its lineage records
(`lineage.<name>.*` tags). The pipeline runs it as tasks of one or more KFP components
(`StageDef.components`, e.g. both SFT phases are the `sft` component); `labpipe run`'s stage view shows a
finished task's key figure (`StageDef.figure`, from the task's output artifacts' metadata), the lineage and
the report list stages in the table's order, and older spellings of a name (`aliases`) map to it.

Used by runs.tracking (canonical names), runs.lineage and runs.report (order), runs.runview (figures).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Metadata = Mapping[str, Mapping[str, Any]]  # a task's output artifact name -> its metadata


@dataclass(frozen=True)
class StageDef:
    name: str  # MLflow stage-run name = lineage stage name
    title: str  # what a person reads
    components: tuple[str, ...] = ()  # KFP components whose tasks run it
    figure: Callable[[Metadata], str] | None = None  # the key figure of a finished task
    aliases: tuple[str, ...] = ()  # older spellings of `name`


def _num(value: Any, fmt: str = "g") -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return str(value)


def generic_figure(values: Mapping[str, Any], limit: int = 3) -> str:
    parts = [
        f"{k}={_num(v)}"
        for k, v in values.items()
        if isinstance(v, int | float | str) and not isinstance(v, bool) and len(str(v)) < 40
    ]
    return ", ".join(parts[:limit])


def failed_figure(meta: Mapping[str, Any]) -> str:
    """': 2 timeout, 1 http; tolerated up to 2%' from a stage's failure_kinds and max_failed_share."""
    kinds = meta.get("failure_kinds") or {}
    if not kinds:
        return ""
    allowed = meta.get("max_failed_share")
    return (
        ": "
        + ", ".join(f"{_num(n)} {k}" for k, n in kinds.items())
        + (f"; tolerated up to {_num(allowed, '.0%')}" if isinstance(allowed, int | float) else "")
    )


def _diff(m: Metadata) -> str:
    d = m.get("diff") or {}
    return (
        f"{d['leaves']} changed leaves ({d.get('leaves_added', 0)} added, "
        f"{d.get('leaves_modified', 0)} modified, {d.get('leaves_deleted', 0)} deleted)"
    )


def _seeds(m: Metadata) -> str:
    d = m.get("seeds") or {}
    return f"{d['records']} seed records, {d.get('seed_examples', 0)} examples, {d.get('chunks', 0)} chunks"


def _generated(m: Metadata) -> str:
    d = m.get("generated") or {}
    return (
        f"{d['records']} generated from {d['requests_sent']} requests "
        f"({d.get('requests_cached', 0)} reused, {d.get('requests_failed', 0)} failed{failed_figure(d)})"
    )


def _kept(m: Metadata) -> str:
    d = m.get("report") or {}
    failed = (
        f"; {d['judge_requests_failed']} judge requests failed{failed_figure(d)}"
        if d.get("judge_requests_failed")
        else ""
    )
    return (
        f"{d['kept']}/{d['generated']} kept ({_num(d['yield'], '.0%')}); "
        f"knowledge {d.get('knowledge_set', 0)}, skills {d.get('skills_set', 0)}{failed}"
    )


def _sft(m: Metadata) -> str:
    d = m.get("model") or {}
    if d.get("first_loss") is None:
        return f"{d.get('phase', '')}: {generic_figure(d)}"
    return (
        f"{d.get('phase', '')}: {int(float(d.get('steps', 0)))} steps, loss "
        f"{_num(d['first_loss'], '.3f')} → {_num(d['final_loss'], '.3f')}"
    )


def _scores(m: Metadata) -> str:
    s, dec = m.get("metrics") or {}, m.get("decision") or {}
    verdict = "publish" if dec.get("publish") else "hold"
    return (
        f"candidate {_num(s.get('candidate.overall'), '.2f')} vs base "
        f"{_num(s.get('base.overall'), '.2f')}: gate says {verdict}"
    )


def _published(m: Metadata) -> str:
    return f"version {(m.get('_params') or {}).get('Output', '?')} aliased production"


def _report(m: Metadata) -> str:
    return "report page written (KFP HTML artifact, report.html in MLflow)"


# In pipeline order: the lineage, `labpipe lineage` and the report list stages in this order.
STAGES: tuple[StageDef, ...] = (
    StageDef("taxonomy_diff", "taxonomy diff", ("taxonomy-diff",), _diff),
    StageDef("seed_extraction", "seed extraction", ("seed-extraction",), _seeds),
    StageDef("synthetic_generation", "synthetic generation", ("synthetic-generation",), _generated),
    StageDef("critique_filter", "critique filter", ("critique-filter",), _kept),
    StageDef("knowledge_sft", "knowledge SFT", ("sft",), _sft, aliases=("knowledge-sft",)),
    StageDef("skill_sft", "skill SFT", ("sft",), _sft, aliases=("skills_sft", "skill-sft")),
    StageDef("mt_bench_eval", "MT-Bench evaluation", ("mt-bench-eval", "mt-bench-eval-gpu"), _scores),
    StageDef("publish_model", "publish", ("publish-model",), _published),
    StageDef("serve_model", "serve"),
)
# Stages that are no lineage step (the gate runs inside the evaluation task; the report is a task of its
# own): they have a name and a figure, and sort after the lineage's stages like any unknown stage.
OTHER_STAGES: tuple[StageDef, ...] = (
    StageDef("quality_gate", "quality gate"),
    StageDef("review", "review", ("review",)),
    StageDef("run_report", "report", ("run-report",), _report),
)

_BY_NAME = {s.name: s for s in STAGES + OTHER_STAGES}
_ALIASES = {alias: s.name for s in STAGES + OTHER_STAGES for alias in s.aliases}
_BY_COMPONENT = {c: s for s in STAGES + OTHER_STAGES for c in s.components}


def canonical(name: str) -> str:
    """The one name of a stage (`skills_sft`, the training phase's old run name, is `skill_sft`)."""
    return _ALIASES.get(name, name)


def stage(name: str) -> StageDef | None:
    return _BY_NAME.get(canonical(name))


def title(name: str) -> str:
    found = stage(name)
    return found.title if found else name.replace("_", " ")


def order(name: str) -> tuple[int, str]:
    """Sort key: the table's order, then any other stage by name."""
    names = [s.name for s in STAGES]
    name = canonical(name)
    return (names.index(name) if name in names else len(names), name)


def key_figure(component: str, metadata: Metadata) -> str:
    """The key figure of a finished task of `component` from its output artifacts' metadata; a generic one
    for a component the table does not know, or whose metadata lacks what its figure needs."""
    found = _BY_COMPONENT.get(component)
    if found is not None and found.figure is not None:
        try:
            return found.figure(metadata)
        except (KeyError, TypeError, ValueError):
            pass
    return generic_figure({k: v for art in metadata.values() for k, v in art.items()})

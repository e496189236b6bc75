"""The critique stage: generated records in, training sets and a yield report out.

    run_critique(CritiqueConfig(generated="gen/", out="crit/", judge=ClientOptions("http://host/v1")))

Filters, cheapest first, so that the judge is paid only for records that survive the free checks:
  format -> length -> near_duplicate -> thresholds on scores recorded by generation (e.g.
  question_quality) -> the flows' critique judge steps (pair_rating; faithfulness -> relevancy ->
  question_quality for knowledge), each with its threshold.
Thresholds and limits come from a profile (profiles/lab.yaml: LAB's; profiles/smoke.yaml: the
offline default run with tiny random models, where scores are recorded but never gate).

Output directory `out` (each file written atomically): knowledge_train.jsonl, skills_train.jsonl,
yield_report.json, yield_report.md, and checkpoints/ (judge replies; a rerun resumes). Judge
replies are also stored in and reused from the shared generation cache (`generation_cache`, as in
generation: docs/generation-cache.md).
The judge model: --judge / JUDGE_ENDPOINT, JUDGE_MODEL, key in JUDGE_API_KEY (or OPENAI_API_KEY).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.llm.failures import DEFAULT_MAX_FAILED_SHARE
from labpipe.llm.options import ClientOptions

KNOWLEDGE_SET = "knowledge_train.jsonl"
SKILLS_SET = "skills_train.jsonl"
REPORT_JSON = "yield_report.json"
REPORT_MD = "yield_report.md"


@dataclass
class CritiqueConfig:
    generated: str | list[str]  # generation output directory (or its generated.jsonl); a list: shards, merged
    out: str  # output directory; rerunning with the same one resumes judge calls
    judge: ClientOptions = field(default_factory=ClientOptions)  # empty endpoint/model: JUDGE_* variables
    profile: str = "lab"  # lab | smoke | path to a profile YAML
    samples_per_skill_leaf: int = 30
    seed: int = 0
    flows_dir: str | None = None
    knowledge_out: str = ""  # extra copies at these paths (KFP artifact paths); default: only in `out`
    skills_out: str = ""
    report_md_out: str = ""
    max_failed_share: float = DEFAULT_MAX_FAILED_SHARE  # more judge requests failed for good: the stage fails
    run_id: str = ""
    tracking_uri: str = ""
    generation_cache: str = ""  # shared reply cache: "" = local under LABPIPE_CACHE, s3://..., "off"


def read_generated(uri: str | list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from labpipe.generation.stage import GENERATED, MANIFEST

    if not isinstance(uri, str):  # the shards of one fanned-out generation (generation/shards.py)
        from labpipe.generation.shards import merge_generated

        return merge_generated([read_generated(u) for u in uri])

    path = Path(uri)
    if path.is_dir():
        path = path / GENERATED
    if not path.is_file():
        raise UserError(
            Problem(
                str(path),
                "not-found",
                "no generated records here",
                "pass the output directory of `labpipe generate` (it holds generated.jsonl)",
            )
        )
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(Problem(f"{path}:{n}:{exc.colno}", "json", f"not JSON: {exc.msg}")) from None
    manifest_path = path.parent / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    return records, manifest


def run_critique(config: CritiqueConfig, client=None, cache=None) -> dict[str, Any]:
    """Filter, judge, mix; returns the artifact metadata (counts, yield, judge requests and tokens).

    An empty `config.out` works in a temporary directory that is removed afterwards (KFP components,
    which copy the sets to their artifact paths).
    """
    if not config.out:
        import dataclasses
        import tempfile

        with tempfile.TemporaryDirectory(prefix="critique-") as tmp:
            try:
                return run_critique(dataclasses.replace(config, out=tmp), client, cache)
            except UserError as err:  # its problems point into `tmp`, about to be removed
                raise _pointing_at_kept_files(err, Path(tmp), config) from None
    from labpipe.retry_guard import guard

    # in a pipeline, a retried task after a deterministic failure ends at once (retry_guard)
    with guard("critique_filter", run_id=config.run_id, tracking_uri=config.tracking_uri,
               root=config.generation_cache):  # fmt: skip
        return _run_critique(config, client, cache)


def _run_critique(config: CritiqueConfig, client, cache) -> dict[str, Any]:
    from labpipe.critique.dedup import near_duplicates
    from labpipe.critique.filters import format_problem, length_problem, score_problem
    from labpipe.critique.judge import run_judges
    from labpipe.critique.mixing import mix
    from labpipe.critique.profiles import load_profile
    from labpipe.critique.report import Ledger, to_markdown, yield_report
    from labpipe.generation.checkpoint import CallStats, Checkpoint
    from labpipe.generation.flow import load_flows
    from labpipe.llm.cache import open_cache
    from labpipe.llm.client import make_client
    from labpipe.llm.failures import check_failures, failure_summary
    from labpipe.llm.options import model_spec
    from labpipe.llm.types import stats_of
    from labpipe.runs.tracking import maybe_stage_run
    from labpipe.storage import atomic_path

    started = time.monotonic()
    records, manifest = read_generated(config.generated)
    profile = load_profile(config.profile)
    flows = {f.name: f for f in load_flows(config.flows_dir).values()}
    for n, rec in enumerate(records, 1):
        if rec.get("flow") not in flows or flows[rec["flow"]].version != rec.get("flow_version"):
            raise UserError(
                Problem(
                    f"{config.generated}:{n}",
                    "unknown-flow",
                    f"record made by flow {rec.get('flow')!r} v{rec.get('flow_version')}, which is not installed",
                    "critique with the flows that generated the records (--flows DIR)",
                )
            )
    spec = model_spec(config.judge, "judge")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger()
    for leaf_id, info in (manifest.get("per_leaf") or {}).items():
        ledger.leaf(leaf_id, info.get("kind", ""))["generation"] = info.get("steps", [])
    for rec in records:
        ledger.leaf(rec["leaf_id"], rec["kind"])["generated"] += 1

    def keep(name: str, recs: list[dict[str, Any]], why, applies=lambda r: True) -> list[dict[str, Any]]:
        ledger.checked(name, sum(1 for r in recs if applies(r)))
        kept = []
        for rec in recs:
            if reason := why(rec):
                ledger.drop(name, rec, reason)
            else:
                kept.append(rec)
        return kept

    params = {
        **{f"judge_{k}": v for k, v in spec.describe().items()},
        "profile": profile.name,
        "samples_per_skill_leaf": config.samples_per_skill_leaf,
        "seed": config.seed,
    }
    own_cache = cache is None
    cache = cache if cache is not None else open_cache(config.generation_cache)
    params["generation_cache"] = cache.uri if cache is not None else "off"
    with maybe_stage_run(
        "critique_filter", pipeline_run_id=config.run_id, tracking_uri=config.tracking_uri, params=params
    ) as run:
        alive = sorted(records, key=lambda r: (r["leaf_id"], r["id"]))
        alive = keep("format", alive, format_problem)
        alive = keep("length", alive, lambda r: length_problem(r, profile))
        dups = near_duplicates(alive, profile.dedup_threshold)
        alive = keep(
            "near_duplicate",
            alive,
            lambda r: f"near-duplicate of {dups[r['id']]}" if r["id"] in dups else None,
        )
        recorded = 0
        for step_name in _recorded_judge_steps(flows):  # free: the scores came with the records

            def below(r, name=step_name):
                step = next((s for s in flows[r["flow"]].generate_steps if s.name == name), None)
                return score_problem(r, step, profile.threshold(step)) if step else None

            has = [r for r in alive if step_name in (r.get("scores") or {})]
            recorded += len(has)
            alive = keep(
                f"{step_name} (scored in generation)",
                alive,
                below,
                lambda r, n=step_name: n in (r.get("scores") or {}),
            )
        stats = CallStats()
        holder: list = [client]

        def get_client():
            if holder[0] is None:
                holder[0] = make_client(spec)
            return holder[0]

        try:
            with Checkpoint(out / "checkpoints", cache=cache) as checkpoint:
                alive, reused = run_judges(
                    alive, flows, profile, get_client, checkpoint, stats, ledger, seed=config.seed
                )
        finally:
            if client is None and holder[0] is not None:
                holder[0].close()
            if own_cache and cache is not None:
                cache.close()
        judge_stats = stats_of(holder[0], stats.failed)
        for rec in alive:
            ledger.leaf(rec["leaf_id"])["kept"] += 1
        knowledge, skills, sampled = mix(
            alive,
            samples_per_skill_leaf=config.samples_per_skill_leaf,
            replay_ratio=profile.knowledge_replay_ratio,
            seed=config.seed,
        )
        for rec in alive:
            if rec["kind"] == "knowledge":
                ledger.leaf(rec["leaf_id"])["sampled"] += 1
        for leaf_id, n in sampled.items():
            ledger.leaf(leaf_id)["sampled"] = n
        replay = sum(1 for ex in skills if ex["metadata"]["phase"] == "knowledge_replay")
        totals = {
            "profile": profile.name,
            "generated": len(records),
            "kept": len(alive),
            "yield": len(alive) / len(records) if records else 0.0,
            "knowledge_set": len(knowledge),
            "skills_set": len(skills),
            "knowledge_replay": replay,
            "judge_requests_sent": stats.sent,
            "judge_requests_cached": stats.cached,
            "requests_sent": stats.sent,
            "requests_reused": stats.cached,
            "cache_hits": stats.cache_hits,
            "judge_scores_reused": reused + recorded,
            "judge_requests_failed": stats.failed,
            "judge_retries": stats.retries,
            "judge_prompt_tokens": stats.prompt_tokens,
            "judge_completion_tokens": stats.completion_tokens,
            "judge_probe_requests": judge_stats.probes,
            "max_failed_share": config.max_failed_share,
            "wall_time_s": round(time.monotonic() - started, 3),
        }
        failures = failure_summary(judge_stats, stats.sent + stats.cached, config.max_failed_share)
        report = yield_report(ledger, totals)
        report["judge_client"] = judge_stats.summary()  # failures by kind with full reasons, dialect
        if holder[0] is not None:  # the model that judged (the listed one when no name was given)
            from labpipe.generation.stage import _model_used

            report["judge_model"] = _model_used(holder[0], spec)
        report["failures"] = failures  # failed for good: how many, of how many, allowed, why
        _write(out / REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False) + "\n", atomic_path)
        _write(out / REPORT_MD, to_markdown(report), atomic_path)
        run.log_artifact(out / REPORT_JSON)
        run.log_artifact(out / REPORT_MD)
        run.log_metrics({k: v for k, v in totals.items() if isinstance(v, int | float)})
        run.log_metrics({_metric(f"dropped.{name}"): f["dropped"] for name, f in report["filters"].items()})
        run.log_metrics(judge_stats.as_metrics("judge."))  # every attempt: requests, tokens, failure kinds
        if failures["failed"]:
            from labpipe.generation.stage import FAILURES_TAG

            run.set_tags({FAILURES_TAG: json.dumps(failures)[:7500]})  # the run report's "failed requests"
            totals["failure_kinds"] = {kind: r["count"] for kind, r in failures["reasons"].items()}
        check_failures(  # before any training set is written: a rerun resends only the failed requests
            judge_stats,
            stats.sent + stats.cached,
            max_failed_share=config.max_failed_share,
            stage="judge",
            where=str(out / REPORT_JSON),
        )
        leaf_kinds = [info.get("kind", "") for info in (manifest.get("per_leaf") or {}).values()]
        _check_not_empty(records, leaf_kinds, knowledge, skills, ledger, out / REPORT_MD)
        _write(
            out / KNOWLEDGE_SET,
            "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in knowledge),
            atomic_path,
        )
        _write(
            out / SKILLS_SET, "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in skills), atomic_path
        )
        for src, dest in (
            (KNOWLEDGE_SET, config.knowledge_out),
            (SKILLS_SET, config.skills_out),
            (REPORT_MD, config.report_md_out),
        ):
            if dest:
                with atomic_path(dest) as tmp:
                    shutil.copyfile(out / src, tmp)
    return totals


def _metric(name: str) -> str:
    return re.sub(r"[^\w\-. :/]", "", name).strip()


def _recorded_judge_steps(flows) -> list[str]:
    names: list[str] = []
    for flow in flows.values():
        names += [s.name for s in flow.generate_steps if s.is_judge and s.name not in names]
    return names


def _write(path: Path, text: str, atomic_path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _pointing_at_kept_files(err: UserError, tmp: Path, config: CritiqueConfig) -> UserError:
    """The same problems, with paths into the temporary output folder replaced by where the yield report
    outlives it: the task's report output (written now; its own output path) and the stage's MLflow run."""
    report = tmp / REPORT_MD
    kept = []
    if report.is_file() and config.report_md_out:
        from labpipe.storage import atomic_path

        _write(Path(config.report_md_out), report.read_text(encoding="utf-8"), atomic_path)
        kept.append(config.report_md_out)
    if config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        kept.append(f"the critique_filter run's artifact {REPORT_MD} in MLflow")
    where = " or ".join(kept) or "critique_filter"
    problems = [
        dataclasses.replace(p, where=where) if p.where.startswith(str(tmp)) else p for p in err.problems
    ]
    return UserError(problems, transient=err.transient)


def _check_not_empty(records, leaf_kinds, knowledge, skills, ledger, report_path) -> None:
    """Stop before training when a training set that the changed leaves should feed came out empty
    (whether generation produced nothing for them or the filters removed everything)."""
    kinds = {r["kind"] for r in records} | set(leaf_kinds)
    had_knowledge = "knowledge" in kinds
    had_skills = bool(kinds - {"knowledge"})
    empty = []
    if not records:
        empty.append("generation produced no records")
    if (had_knowledge and not knowledge) or (not knowledge and not skills):
        empty.append("the knowledge training set is empty")
    if had_skills and not any(ex["metadata"]["phase"] == "skills" for ex in skills):
        empty.append("the skills training set has no skill examples")
    if empty:
        raise UserError(
            Problem(
                str(report_path),
                "empty-training-set",
                "; ".join(empty) + f": {ledger.summary()}",
                "loosen the thresholds (a pipeline run: --param critique_profile=smoke; `labpipe critique`: "
                "--profile smoke or a profile YAML), check the teacher, or read the yield report",
            )
        )

"""Review a taxonomy contribution before it is merged: `run_review(ReviewConfig) -> dict`.

For every leaf the contribution changes (the taxonomy at `ref`, diffed against `base`: `production` by
default, as the weekly run does) the review answers what a curator asks, each with the library's own
code, never a second implementation:

- validation: `taxonomy.validate.validate_leaf`, located problems (what `taxonomy validate` reports);
- overlap: near-duplicate seeds against every other leaf (the taxonomy at the merge base and the other
  changed leaves) with critique's measure, and contradictions (review/overlap.py);
- knowledge: the document repository and commit resolve and the chunks at the base model's tokenizer
  (`taxonomy.seeds.knowledge_chunks`);
- a generation sample: the leaf's real flow with the configured teacher (`run_generation`), cut to
  `sample_size` first-step requests (the first fan-out indices, or the first chunk x context items), so
  that every sample request is one the full run sends: through the shared generation cache the next
  `labpipe run` reuses them all; then critique (`run_critique`, the configured profile): the yield and
  the drop reasons, and for knowledge the share of questions the faithfulness judge accepts;
- "already known": the production model (`production.find_production`), else the base model, answers the
  leaf's seed questions and the MT-Bench judge scores them against the seed answers (`run_mt_bench`
  with the branch-evaluation questions of `evaluation.branch`);
- cost: the leaf's planned teacher requests in the next run (the shard plan's count) and tokens (the
  sample's tokens per request times that).

Each leaf gets a verdict, `fail` (validation errors, a document that does not resolve, a sample the full
run would keep nothing of), `warn` (near-duplicates, contradictions, already known, a low yield) or
`pass`, with its reasons. Output directory `out` (each file written atomically): review.json (for tools),
review.md (short, for a pull-request comment) and review.html (one self-contained page).
"""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.llm.options import ClientOptions
from labpipe.review.known import already_known
from labpipe.review.sample import plan_cost, sample_leaves, seed_records

REVIEW_JSON, REVIEW_MD, REVIEW_HTML = "review.json", "review.md", "review.html"
VERDICTS = ("pass", "warn", "fail")


@dataclass
class ReviewConfig:
    taxonomy: str  # a git URL, a local repository or a taxonomy directory
    out: str  # output directory (local or s3://): review.json, review.md, review.html
    ref: str = ""  # the contribution: branch, tag or commit ("" = the work tree as it is)
    base: str = "production"  # diff base: production | a ref | empty
    leaves: list[str] = field(default_factory=list)  # review only these changed leaves ([] = all)
    base_model: str = ""  # tokenizer for document chunks; the model asked when no production model exists
    teacher: ClientOptions = field(default_factory=ClientOptions)  # "" endpoint = TEACHER_ENDPOINT (the secret)
    judge: ClientOptions = field(default_factory=ClientOptions)  # "" endpoint = JUDGE_ENDPOINT
    # what the full run uses, so that the sample's requests are the run's (pipeline parameters)
    sample_size: int = 2  # first-step teacher requests per leaf (fan-out indices, or chunk x context items)
    generation_gate: bool = True
    critique_profile: str = "lab"
    samples_per_skill_leaf: int = 30
    seed: int = 42  # the pipeline's critique seed
    chunk_tokens: int = 1000
    generation_cache: str = ""  # shared reply cache: "" = local under LABPIPE_CACHE, s3://..., "off"
    # overlap and "already known"
    dedup_profile: str = "lab"  # whose dedup_threshold measures near-duplicates (LAB's: 0.85)
    known: bool = True  # ask the production (or base) model the seed questions
    known_model: str = ""  # ask this model instead of looking production up (e.g. its KServe endpoint, /v1)
    known_model_name: str = ""  # the model name at that endpoint
    known_questions: int = 5  # seed questions asked per leaf
    known_threshold: float = 8.0  # mean judge score (1-10) from which a leaf counts as already known
    max_new_tokens: int = 256
    questions: str = (
        ""  # MT-Bench data (judge prompts): a FastChat data dir; "" = LABPIPE_MT_BENCH_DATA / pinned
    )
    production_model_name: str = "labpipe-model"
    warn_yield: float = 0.25  # critique keeps less than this share of the sample: warn
    fail_on_warn: bool = False  # exit code 1 for warn too (CI)
    html_out: str = ""  # extra copies of review.html / review.md at these paths (KFP artifact paths)
    md_out: str = ""
    workdir: str = ""  # keep the sample's generation/critique/evaluation outputs here ("" = temporary)
    run_id: str = ""
    tracking_uri: str = ""

    def validate(self) -> None:
        problems = []
        if self.sample_size < 1:
            problems.append(("sample_size", f"must be at least 1, not {self.sample_size}"))
        if self.known_questions < 1:
            problems.append(("known_questions", f"must be at least 1, not {self.known_questions}"))
        if not 0 <= self.warn_yield <= 1:
            problems.append(("warn_yield", f"must be between 0 and 1, not {self.warn_yield}"))
        if problems:
            raise UserError(
                [Problem(f"review {name}", "review-config", msg, field=name) for name, msg in problems]
            )


@dataclass
class LeafReview:
    leaf_id: str
    path: str
    status: str
    kind: str = ""
    verdict: str = "pass"
    reasons: list[str] = field(default_factory=list)  # why warn / fail, one line each
    problems: list[dict[str, Any]] = field(default_factory=list)  # located validation/document problems
    overlap: dict[str, Any] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    known: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)

    def flag(self, verdict: str, reason: str) -> None:
        self.reasons.append(reason)
        if VERDICTS.index(verdict) > VERDICTS.index(self.verdict):
            self.verdict = verdict


def run_review(config: ReviewConfig, *, teacher_client=None, judge_client=None) -> dict[str, Any]:
    """Review the changed leaves; write review.json/.md/.html to `config.out`; returns the summary
    (verdict counts, `exit_code`, requests). Clients may be passed in (tests); else made from the config."""
    config.validate()
    started = time.monotonic()
    with ExitStack() as stack:
        work = (
            Path(config.workdir)
            if config.workdir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labpipe-review-")))
        )
        work.mkdir(parents=True, exist_ok=True)
        doc = _review(config, stack, work, teacher_client, judge_client)
    doc["totals"]["wall_time_s"] = round(time.monotonic() - started, 3)
    _write_outputs(config, doc)
    return {**doc["totals"], "exit_code": doc["exit_code"]}


def _review(
    config: ReviewConfig, stack: ExitStack, work: Path, teacher_client, judge_client
) -> dict[str, Any]:
    from labpipe.registry import production as prod
    from labpipe.taxonomy.diff import EMPTY_BASE, taxonomy_diff
    from labpipe.taxonomy.stage import TaxonomyDiffConfig, _checkout, _production_base

    diff_cfg = TaxonomyDiffConfig(
        taxonomy=config.taxonomy,
        out="",
        taxonomy_ref=config.ref,
        base=config.base,
        tracking_uri=config.tracking_uri,
        production_model_name=config.production_model_name,
    )
    root = _checkout(diff_cfg, stack)
    production, note, base_ref = None, "", config.base or prod.PRODUCTION_BASE
    if base_ref == prod.PRODUCTION_BASE:
        base_ref, production, note = _production_base(diff_cfg, root)
    diff = taxonomy_diff(root, base_ref)
    changes = [c for c in diff.changes if not config.leaves or c.leaf_id in config.leaves]
    if config.leaves and not changes:
        raise UserError(
            Problem(
                config.taxonomy,
                "review-leaves",
                f"none of {', '.join(config.leaves)} changed against {config.base}",
                "pass leaves the contribution changes (labpipe taxonomy diff lists them)",
                field="leaves",
            )
        )
    reviews, leaves = _validate(root, changes)
    base_tree = diff.merge_base if diff.base_used != EMPTY_BASE else ""
    _overlap(config, root, base_tree, changes, reviews, leaves)
    records = seed_records(config, diff, reviews, leaves)
    requests = {"teacher_sent": 0, "teacher_reused": 0, "judge_sent": 0, "judge_reused": 0}
    if records:
        sample_leaves(config, work, records, reviews, requests, teacher_client, judge_client)
        plan_cost(records, reviews, work)
        if config.known:
            already_known(config, work, records, reviews, production)
    for review in reviews.values():
        if review.verdict == "pass" and not review.reasons:
            review.reasons.append("no problem found")
    counts = {v: sum(r.verdict == v for r in reviews.values()) for v in VERDICTS}
    failing = counts["fail"] > 0 or (config.fail_on_warn and counts["warn"] > 0)
    return {
        "taxonomy": config.taxonomy,
        "ref": config.ref,
        "head_commit": diff.head_commit,
        "base": config.base,
        "base_used": diff.base_used,
        "merge_base": diff.merge_base,
        "base_note": note,
        "production": asdict(production) if production else None,
        "settings": {
            "sample_size": config.sample_size,
            "critique_profile": config.critique_profile,
            "generation_gate": config.generation_gate,
            "known_threshold": config.known_threshold,
            "warn_yield": config.warn_yield,
            "fail_on_warn": config.fail_on_warn,
            "teacher": _describe(config.teacher.endpoint, config.teacher.model, "TEACHER"),
            "judge": _describe(config.judge.endpoint, config.judge.model, "JUDGE"),
        },
        "leaves": [asdict(r) for r in reviews.values()],
        "deleted": [c.leaf_id for c in diff.changes if c.status == "deleted"],
        "totals": {"leaves": len(reviews), **counts, **requests},
        "exit_code": 1 if failing else 0,
    }


def _describe(target: str, model: str, prefix: str) -> str:
    import os

    target = target or os.environ.get(f"{prefix}_ENDPOINT", "")
    model = model or os.environ.get(f"{prefix}_MODEL", "")
    return f"{target} {model}".strip()


# ---------------------------------------------------------------- validation and overlap


def _validate(root: Path, changes) -> tuple[dict[str, LeafReview], dict[str, Any]]:
    from labpipe.taxonomy.validate import validate_leaf

    reviews: dict[str, LeafReview] = {}
    leaves: dict[str, Any] = {}
    for change in changes:
        if change.status == "deleted":
            continue
        review = reviews[change.leaf_id] = LeafReview(change.leaf_id, change.path, change.status)
        leaf, problems = validate_leaf(root, change.path)
        review.problems = [asdict(p) for p in problems]
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            review.flag("fail", f"{len(errors)} validation error(s), first: {errors[0]}")
        elif leaf is None:  # skipped (an empty file)
            review.flag("warn", str(problems[0]) if problems else "the leaf is skipped")
        else:
            review.kind = leaf.kind
            leaves[change.leaf_id] = leaf
    return reviews, leaves


def reference_leaves(root: Path) -> list[Any]:
    """Every leaf of the taxonomy at `root` whose seeds can be read, foundational skills included: validated as
    usual except for attribution.txt (older public leaves lack it; their seeds still count for overlap)."""
    from labpipe.taxonomy.validate import find_leaf_files, validate_leaf

    paths, _ = find_leaf_files(root, foundational=True)
    return [
        leaf for path in paths if (leaf := validate_leaf(root, path, check_attribution=False)[0]) is not None
    ]


def base_leaves(root: Path, commit: str) -> list[Any]:
    """`reference_leaves` of the taxonomy at `commit` (extracted with git archive)."""
    import tarfile

    from labpipe.taxonomy import gitrepo

    if not commit:
        return []
    prefix = gitrepo.work_tree_prefix(root) or ""
    with tempfile.TemporaryDirectory(prefix="labpipe-review-base-") as tmp:
        archive = Path(tmp) / "base.tar"
        tree_ish = f"{commit}:{prefix}" if prefix else commit
        gitrepo.git("archive", "--format=tar", "-o", str(archive), tree_ish, cwd=root)
        tree = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        return reference_leaves(tree)


def _overlap(config, root, base_tree, changes, reviews, leaves) -> None:
    from labpipe.critique.profiles import load_profile
    from labpipe.review.overlap import find_overlap, seeds_of
    from labpipe.taxonomy.seeds import seed_examples

    threshold = load_profile(config.dedup_profile).dedup_threshold
    replaced = {c.leaf_id for c in changes} | {c.old_path.rsplit("/", 1)[0] for c in changes if c.old_path}
    others = [
        s
        for leaf in base_leaves(root, base_tree)
        if leaf.leaf_id not in replaced
        for s in seeds_of(leaf.leaf_id, seed_examples(leaf))
    ]
    mine = {leaf_id: seeds_of(leaf_id, seed_examples(leaf)) for leaf_id, leaf in leaves.items()}
    for leaf_id, seeds in mine.items():
        rest = others + [s for other, theirs in mine.items() if other != leaf_id for s in theirs]
        found = find_overlap(seeds, rest, threshold)
        review = reviews[leaf_id]
        review.overlap = {
            "threshold": threshold,
            "compared_leaves": len({s.leaf_id for s in rest}),
            "near_duplicates": found.near_duplicates,
            "contradictions": found.contradictions,
        }
        if found.near_duplicates:
            review.flag(
                "warn",
                f"{len(found.near_duplicates)} of {len(seeds)} seed examples are near-duplicates of "
                f"{', '.join(sorted({h['of'].rsplit('#', 1)[0] for h in found.near_duplicates}))}",
            )
        if found.contradictions:
            review.flag(
                "warn",
                f"{len(found.contradictions)} seed question(s) also in "
                f"{', '.join(sorted({h['of'].rsplit('#', 1)[0] for h in found.contradictions}))} "
                "with a different answer",
            )


# ---------------------------------------------------------------- outputs


def _write_outputs(config: ReviewConfig, doc: dict[str, Any]) -> None:
    from labpipe import storage
    from labpipe.review.report import to_html, to_markdown

    html, md = to_html(doc), to_markdown(doc)
    for path, text in ((config.html_out, html), (config.md_out, md)):
        if path:
            storage.write_text(path, text)
    storage.write_text(storage.join(config.out, REVIEW_HTML), html)
    storage.write_text(storage.join(config.out, REVIEW_MD), md)
    storage.write_text(
        storage.join(config.out, REVIEW_JSON), json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    )
    from labpipe.runs.tracking import maybe_stage_run

    with maybe_stage_run(
        "review",
        pipeline_run_id=config.run_id,
        tracking_uri=config.tracking_uri,
        params={
            "taxonomy": config.taxonomy,
            "ref": config.ref,
            "base": config.base,
            "taxonomy_commit": doc["head_commit"],
        },
    ) as run:
        run.log_metrics({k: v for k, v in doc["totals"].items() if isinstance(v, int | float)})
        if not storage.is_s3(config.out):
            for name in (REVIEW_JSON, REVIEW_MD, REVIEW_HTML):
                run.log_artifact(Path(config.out) / name, "review")

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
import logging
import math
import re
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.llm.options import ClientOptions

log = logging.getLogger(__name__)
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
    records = _seed_records(config, diff, reviews, leaves)
    requests = {"teacher_sent": 0, "teacher_reused": 0, "judge_sent": 0, "judge_reused": 0}
    if records:
        _sample(config, work, records, reviews, requests, teacher_client, judge_client)
        _cost(records, reviews, work)
        if config.known:
            _already_known(config, work, records, reviews, production)
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


# ---------------------------------------------------------------- seeds, documents, sample


def _seed_records(config, diff, reviews, leaves) -> list[dict[str, Any]]:
    from labpipe.taxonomy.chunking import token_counter
    from labpipe.taxonomy.seeds import knowledge_chunks, seed_record
    from labpipe.taxonomy.stage import _document_repo

    count = None
    records = []
    for leaf_id, leaf in leaves.items():
        review = reviews[leaf_id]
        record = seed_record(leaf, {"status": review.status})
        if leaf.kind == "knowledge":
            count = count or token_counter(config.base_model)
            repo = _document_repo(str(leaf.data["document"]["repo"]), config.taxonomy)
            try:
                record["document"], record["chunks"], warnings = knowledge_chunks(
                    leaf, repo, config.chunk_tokens, count
                )
            except UserError as err:
                review.problems += [asdict(p) for p in err.problems]
                review.document = {"repo": repo, "resolved": False}
                review.flag("fail", f"document does not resolve: {err.problems[0]}")
                continue
            review.problems += [asdict(p) for p in warnings]
            review.document = {
                "repo": record["document"]["repo"],
                "commit": record["document"]["commit"],
                "resolved": True,
                "files": record["document"]["files"],
                "chunks": len(record["chunks"]),
                "chunk_tokens": config.chunk_tokens,
                "tokenizer": config.base_model or "approximate (no base model given)",
                "tokens": sum(c["n_tokens"] for c in record["chunks"]),
            }
            if not record["chunks"]:
                review.flag("fail", "the document yields no text to chunk")
                continue
        record["taxonomy_commit"] = diff.head_commit
        records.append(record)
    return records


def sample_record(record: dict[str, Any], flow, size: int) -> tuple[dict[str, Any], float]:
    """(the seed record cut to `size` first-step requests, the fan-out scale to generate it with).

    Every request of the sample is one the full run sends (request ids do not depend on the cut): a
    knowledge record keeps its first chunk(s) and seed contexts (items are chunk x context, each with its
    own context's examples), a skill leaf's first step keeps its first `size` fan-out indices."""
    if flow.source == "leaf":
        first = flow.generate_steps[0]
        return record, min(1.0, size / first.fan_out)
    contexts: list[str] = []
    for ex in record["seed_examples"]:
        if (ex.get("context") or "") not in contexts:
            contexts.append(ex.get("context") or "")
    keep = contexts[: max(1, min(size, len(contexts)))]
    n_chunks = math.ceil(size / len(keep))
    cut = {
        **record,
        "seed_examples": [ex for ex in record["seed_examples"] if (ex.get("context") or "") in keep],
        "chunks": record["chunks"][:n_chunks],
    }
    return cut, 1.0


def _leaf_dir(leaf_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", leaf_id)


def _sample(config, work, records, reviews, requests, teacher_client, judge_client) -> None:
    from labpipe.critique.stage import REPORT_JSON, CritiqueConfig, run_critique
    from labpipe.generation.flow import load_flows
    from labpipe.generation.stage import GenerationConfig, run_generation
    from labpipe.llm.cache import open_cache
    from labpipe.llm.client import make_client
    from labpipe.llm.options import model_spec

    flows = load_flows()
    teacher_spec = model_spec(config.teacher, "teacher")
    judge_spec = model_spec(config.judge, "judge")
    own = []
    if teacher_client is None:
        teacher_client = make_client(teacher_spec)
        own.append(teacher_client)
    if judge_client is None:
        same = (judge_spec.target, judge_spec.model) == (teacher_spec.target, teacher_spec.model)
        judge_client = teacher_client if same else make_client(judge_spec)
        if judge_client is not teacher_client:
            own.append(judge_client)
    cache = open_cache(config.generation_cache)
    try:
        for record in records:
            review = reviews[record["leaf_id"]]
            flow = flows[record["kind"]]
            cut, scale = sample_record(record, flow, config.sample_size)
            leaf_work = work / _leaf_dir(record["leaf_id"])
            leaf_work.mkdir(parents=True, exist_ok=True)
            seeds = leaf_work / "seeds.jsonl"
            seeds.write_text(json.dumps(cut, ensure_ascii=False) + "\n", encoding="utf-8")
            gen = run_generation(
                GenerationConfig(
                    seeds=str(seeds),
                    out=str(leaf_work / "generated"),
                    teacher=config.teacher,
                    fan_out_scale=scale,
                    gate=config.generation_gate,
                    progress=False,
                    generation_cache=config.generation_cache,
                ),
                client=teacher_client,
                cache=cache,
            )
            requests["teacher_sent"] += gen["requests_sent"]
            requests["teacher_reused"] += gen["requests_reused"]
            manifest = json.loads((leaf_work / "generated" / "manifest.json").read_text(encoding="utf-8"))
            steps = manifest["per_leaf"].get(record["leaf_id"], {}).get("steps", [])
            review.sample = {
                "first_step_requests": config.sample_size,
                "teacher_requests": gen["requests_sent"] + gen["requests_reused"],
                "teacher_requests_sent": gen["requests_sent"],
                "teacher_requests_reused": gen["requests_reused"],
                "generated": gen["records"],
                "generation_dropped": {s["step"]: s["dropped"] for s in steps if s["dropped"]},
            }
            if gen["records"] == 0:
                review.flag(
                    "fail", "the teacher produced no usable record from the sample: " + _gen_reasons(steps)
                )
                continue
            crit_dir = leaf_work / "critique"
            try:
                crit = run_critique(
                    CritiqueConfig(
                        generated=str(leaf_work / "generated"),
                        out=str(crit_dir),
                        judge=config.judge,
                        profile=config.critique_profile,
                        samples_per_skill_leaf=config.samples_per_skill_leaf,
                        seed=config.seed,
                        generation_cache=config.generation_cache,
                    ),
                    client=judge_client,
                    cache=cache,
                )
            except UserError as err:
                if not any(p.rule == "empty-training-set" for p in err.problems):
                    raise
                crit = json.loads((crit_dir / REPORT_JSON).read_text(encoding="utf-8"))["totals"]
            report = json.loads((crit_dir / REPORT_JSON).read_text(encoding="utf-8"))
            requests["judge_sent"] += crit["judge_requests_sent"]
            requests["judge_reused"] += crit["judge_requests_cached"]
            leaf_report = report["leaves"].get(record["leaf_id"], {})
            kept, generated = leaf_report.get("kept", 0), leaf_report.get("generated", gen["records"])
            review.sample.update(
                {
                    "kept": kept,
                    "yield": round(kept / generated, 3) if generated else 0.0,
                    "critique_profile": report["totals"]["profile"],
                    "dropped": dict(leaf_report.get("dropped", {})),
                    "judge_requests_sent": crit["judge_requests_sent"],
                    "judge_requests_reused": crit["judge_requests_cached"],
                }
            )
            if record["kind"] == "knowledge":
                review.sample["faithfulness"] = _faithfulness(report, flow, crit_dir)
            if kept == 0:
                review.flag(
                    "fail",
                    f"critique keeps nothing of the sample ({generated} generated): "
                    + leaf_report.get("note", "").removeprefix("yielded nothing: "),
                )
            elif kept / generated < config.warn_yield:
                review.flag(
                    "warn",
                    f"critique keeps {kept} of {generated} sample records "
                    f"({kept / generated:.0%} < {config.warn_yield:.0%})",
                )
    finally:
        if cache is not None:
            cache.close()
        for client in own:
            client.close()


def _gen_reasons(steps: list[dict[str, Any]]) -> str:
    parts = [
        f"{s['step']}: " + ", ".join(f"{n}x {why}" for why, n in s["dropped"].items())
        for s in steps
        if s["dropped"]
    ]
    return "; ".join(parts) or "no starting items"


def _faithfulness(report: dict[str, Any], flow, crit_dir: Path) -> dict[str, Any]:
    """The share of the sample's questions the faithfulness judge accepts (score at or above the flow's
    threshold), whether or not the profile drops on it (the smoke profile records scores only)."""
    from labpipe.critique.stage import KNOWLEDGE_SET

    step = next((s for s in flow.critique_steps if s.name == "faithfulness"), None)
    judged = report["filters"].get("faithfulness", {})
    checked, dropped = judged.get("checked", 0), judged.get("dropped", 0)
    if step is None or not checked:
        return {"judged": 0, "accepted": 0, "share": None}
    below = 0
    sets = crit_dir / KNOWLEDGE_SET
    if sets.is_file() and step.threshold is not None:
        for line in sets.read_text(encoding="utf-8").splitlines():
            score = json.loads(line)["metadata"]["scores"].get("faithfulness")
            below += score is not None and score < step.threshold
    accepted = checked - dropped - below
    return {
        "judged": checked,
        "accepted": accepted,
        "share": round(accepted / checked, 3),
        "threshold": step.threshold,
    }


def _cost(records, reviews, work: Path) -> None:
    """Planned teacher requests of the leaf in the next run (as the shard plan counts them) and tokens
    (the sample's mean tokens per teacher request times that)."""
    from labpipe.generation.checkpoint import iter_rows
    from labpipe.generation.flow import load_flows
    from labpipe.generation.shards import _starting_items, requests_per_item

    flows = load_flows()
    for record in records:
        flow = flows[record["kind"]]
        planned = round(requests_per_item(flow) * max(1, _starting_items(flow, record)))
        rows = []
        for path in sorted(
            (work / _leaf_dir(record["leaf_id"]) / "generated" / "checkpoints").glob("*.jsonl")
        ):
            rows += list(iter_rows(path))
        per_request = (
            sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in rows) / len(rows)
            if rows
            else 0
        )
        reviews[record["leaf_id"]].cost = {
            "planned_teacher_requests": planned,
            "tokens_per_request": round(per_request, 1),
            "planned_tokens": round(planned * per_request),
            "measured_on": len(rows),
        }


# ---------------------------------------------------------------- already known


def production_model_location(name: str, tracking_uri: str, dest: Path) -> str:
    """Where the `production` version of `name` can be read: its s3:// source, else a download."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    from labpipe.registry import production as prod
    from labpipe.storage import is_s3

    version = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(
        name, prod.PRODUCTION_ALIAS
    )
    if is_s3(version.source):
        return version.source
    return mlflow.artifacts.download_artifacts(
        artifact_uri=version.source, dst_path=str(dest), tracking_uri=tracking_uri
    )


def _already_known(config, work, records, reviews, production) -> None:
    import os

    from labpipe.evaluation.branch import branch_questions
    from labpipe.evaluation.fastchat_io import read_judgments
    from labpipe.evaluation.stage import EvalConfig, judge_label, run_mt_bench

    uri = config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not config.known_model and production is None and uri and config.production_model_name:
        from labpipe.registry.production import find_production

        production = find_production(config.production_model_name, uri)
    endpoint_name = ""
    if config.known_model:
        model, label, endpoint_name = config.known_model, "production", config.known_model_name
        described = f"{config.known_model} {config.known_model_name}".strip()
    elif production is not None:
        model, label = (
            production_model_location(production.name, uri, work / "production-model"),
            "production",
        )
        described = production.describe()
    elif config.base_model:
        model, label, described = config.base_model, "base", f"the base model {config.base_model}"
    else:
        for record in records:
            reviews[record["leaf_id"]].known = {"asked": "", "note": "no production model and no base model"}
        return
    cut = [{**r, "seed_examples": r["seed_examples"][: config.known_questions]} for r in records]
    questions_file = work / "known-questions.jsonl"
    questions_file.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in cut), encoding="utf-8"
    )
    questions, _ = branch_questions(str(questions_file))
    eval_cfg = EvalConfig(
        model=model,
        model_endpoint_name=endpoint_name,
        judge=replace(
            config.judge,
            endpoint=config.judge.endpoint or os.environ.get("JUDGE_ENDPOINT", ""),
            model=config.judge.model or os.environ.get("JUDGE_MODEL", ""),
            api_key_env=config.judge.api_key_env or "OPENAI_API_KEY",
        ),
        out=str(work / "known"),
        model_name=label,
        questions=config.questions,
        include_mt_bench=False,
        extra_questions=questions,
        max_new_tokens=config.max_new_tokens,
        concurrency=config.judge.concurrency,
        max_retries=config.judge.max_retries,
        timeout_s=config.judge.timeout_s,
    )
    try:
        run_mt_bench(eval_cfg)
    except UserError as exc:  # the judge rated too few answers: "already known" is undecided (said on the page and
        # in the JSON; the verdict is about the leaf, not the judge)
        if not any(p.rule == "evaluation-invalid" for p in exc.problems):
            raise
        reason = next(p.message for p in exc.problems if p.rule == "evaluation-invalid")
        log.warning("already known: not judged: %s", reason)
        for record in records:
            reviews[record["leaf_id"]].known = {"asked": "", "note": f"{described}: not judged: {reason}"}
        return
    judgments = read_judgments(
        str(work / "known" / "model_judgment" / f"{judge_label(eval_cfg)}_single.jsonl")
    )
    by_leaf: dict[str, list[float]] = {}
    leaf_of = {q.question_id: q.category for q in questions}
    for j in judgments:
        if j.score != -1:
            by_leaf.setdefault(leaf_of[j.question_id], []).append(float(j.score))
    for record in records:
        scores = by_leaf.get(record["leaf_id"], [])
        review = reviews[record["leaf_id"]]
        mean = round(sum(scores) / len(scores), 2) if scores else None
        review.known = {
            "asked": described,
            "questions": len(cut[records.index(record)]["seed_examples"]),
            "scored": len(scores),
            "mean_score": mean,
            "threshold": config.known_threshold,
        }
        if mean is not None and mean >= config.known_threshold:
            review.flag(
                "warn",
                f"already known: {described} scores {mean}/10 on its seed questions "
                f"(>= {config.known_threshold}); the leaf may add little",
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

"""The two taxonomy stages of the pipeline: taxonomy diff and seed extraction.

Each is one library call with a typed config, returning the KFP artifact metadata (leaf counts,
taxonomy head commit, base used, merge base), and logging to MLflow as a nested stage run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.paths import DIFF_FILE, LEAVES_DIR
from labpipe.registry import production as prod
from labpipe.runs.tracking import maybe_stage_run
from labpipe.storage import atomic_dir, atomic_path
from labpipe.taxonomy import gitrepo
from labpipe.taxonomy.diff import DEFAULT_BASE, EMPTY_BASE, LeafChange, taxonomy_diff
from labpipe.taxonomy.seeds import extract_seeds
from labpipe.taxonomy.validate import ATTRIBUTION_FILE, LEAF_FILE, find_leaf_files, validate_taxonomy

log = logging.getLogger(__name__)
DEFAULT_CHUNK_TOKENS = 1000


@dataclass
class TaxonomyDiffConfig:
    taxonomy: str  # a local directory, or a git URL / local repository path / file:// URL to clone
    out: str  # directory to write: diff.json + leaves/<leaf_id>/{qna.yaml,attribution.txt}
    taxonomy_ref: str = ""  # branch, tag or commit to check out (the taxonomy is then cloned)
    base: str = DEFAULT_BASE  # ref to diff against, "empty" for every leaf, or "production" (see below)
    run_id: str = ""
    tracking_uri: str = ""
    # "changed": the output lists the changed leaves only; "taxonomy": every leaf at head (unchanged
    # ones with status "unchanged"), so the training sets cover the whole taxonomy
    scope: str = "changed"
    # base "production": diff against the taxonomy commit recorded on this registered model's
    # `production` version; a run whose fingerprint equals production's has nothing to do
    production_model_name: str = ""
    force: bool = False  # train even when nothing changed since production
    inputs: prod.ModelInputs = field(default_factory=prod.ModelInputs)  # the fingerprint's non-taxonomy part


@dataclass
class SeedExtractionConfig:
    diff: str  # a taxonomy-diff output directory
    out: str  # the JSONL file to write, one seed record per leaf
    tokenizer: str = ""  # model dir / s3:// URI whose tokenizer budgets chunks; "" = approx_tokens
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    shards: int = 1  # generation fan-out: parts of the shard plan (generation/shards.py)
    shard_plan_out: str = ""  # where to write the shard plan JSON ("" = none)
    run_id: str = ""
    tracking_uri: str = ""


def _local_dir(taxonomy: str) -> Path | None:
    path = Path(taxonomy.removeprefix("file://")) if taxonomy.startswith("file://") else Path(taxonomy)
    return path.resolve() if path.is_dir() else None


def _checkout(cfg: TaxonomyDiffConfig, stack: ExitStack) -> Path:
    """The directory to diff: the local taxonomy itself, or a clone of it at cfg.taxonomy_ref."""
    local = _local_dir(cfg.taxonomy)
    if local is not None and not cfg.taxonomy_ref and not gitrepo.is_bare(local):
        return local
    if local is None and not gitrepo.is_remote_url(cfg.taxonomy):
        raise UserError(
            Problem(
                where=cfg.taxonomy,
                rule="taxonomy",
                message="taxonomy not found",
                fix="pass a taxonomy directory, a local git repository or a git URL",
            )
        )
    dest = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labpipe-taxonomy-"))) / "taxonomy"
    try:
        gitrepo.clone(cfg.taxonomy, dest, ref=cfg.taxonomy_ref)
    except gitrepo.GitError as exc:
        raise UserError(
            Problem(
                where=cfg.taxonomy,
                rule="taxonomy-clone",
                field="taxonomy_ref",
                message=f"cannot get the taxonomy at '{cfg.taxonomy_ref or 'default branch'}' ({exc.detail})",
                fix="check the taxonomy URL and that the ref exists there",
            )
        ) from None
    return dest


def _document_repo(repo: str, taxonomy: str) -> str:
    """document.repo as written, except a relative path, resolved against the local taxonomy directory."""
    if gitrepo.is_remote_url(repo) or Path(repo).is_absolute():
        return repo
    local = _local_dir(taxonomy)
    return str((local / repo).resolve()) if local else repo


def _production_base(cfg: TaxonomyDiffConfig, root: Path) -> tuple[str, prod.ProductionModel | None, str]:
    """(ref to diff against, the production model or None, a note) for base "production"."""
    uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri or not cfg.production_model_name:
        raise UserError(
            Problem(
                where="base=production",
                rule="production-base",
                field="mlflow_tracking_uri" if not uri else "production_model_name",
                message="base=production reads the production model from the MLflow registry, but "
                + ("no tracking URI is set" if not uri else "no registered model name is given"),
                fix="set mlflow_tracking_uri (or MLFLOW_TRACKING_URI) and production_model_name, "
                "or pass base=origin/main | <ref> | empty",
            )
        )
    found = prod.find_production(cfg.production_model_name, uri)
    if found is None:
        return (
            EMPTY_BASE,
            None,
            (
                f"no model registered as {cfg.production_model_name}@{prod.PRODUCTION_ALIAS} yet: every leaf is new"
            ),
        )
    if not found.commit:
        return (
            EMPTY_BASE,
            found,
            (
                f"{found.describe()} has no {prod.TAXONOMY_COMMIT_TAG} tag (published before labpipe recorded it): "
                "every leaf is taken"
            ),
        )
    commit = gitrepo.ensure_commit(root, found.commit)
    if commit is None:
        shallow = gitrepo.is_shallow(root)
        raise UserError(
            Problem(
                where=cfg.taxonomy,
                rule="production-commit",
                field="taxonomy",
                message=f"the taxonomy commit of {found.describe()}, {found.commit}, is not in "
                + ("this shallow clone" if shallow else "this taxonomy repository")
                + " and cannot be fetched from it",
                fix="clone with full history (no --depth)"
                if shallow
                else "point taxonomy at the repository production was trained from "
                f"({found.repo or 'see the version tag ' + prod.TAXONOMY_REPO_TAG}), or pass base=empty",
            )
        )
    return commit, found, f"diffed against {found.describe()}"


def run_taxonomy_diff(cfg: TaxonomyDiffConfig) -> dict[str, Any]:
    """Diff the taxonomy, validate the leaves to train on, and write diff.json plus a copy of each of them.

    diff.json also holds the plan: train, or "nothing to do" (base=production and an unchanged fingerprint).
    """
    if cfg.scope not in prod.SCOPES:
        raise UserError(
            Problem(
                where=f"scope={cfg.scope}",
                rule="scope",
                field="scope",
                message=f"scope must be one of {', '.join(prod.SCOPES)}",
                fix="scope=taxonomy trains on every leaf; scope=changed on the changed leaves only",
            )
        )
    with ExitStack() as stack:
        root = _checkout(cfg, stack)
        production, note = None, ""
        base_ref = cfg.base or DEFAULT_BASE
        if base_ref == prod.PRODUCTION_BASE:
            base_ref, production, note = _production_base(cfg, root)
        diff = taxonomy_diff(root, base_ref)
        diff.base_requested = cfg.base or DEFAULT_BASE
        all_paths, _ = find_leaf_files(root)
        changed_ids = [c.leaf_id for c in diff.changed]
        if cfg.scope == "taxonomy":
            listed = {c.path for c in diff.changes}
            diff.changes += [
                LeafChange(p.rsplit("/", 1)[0], p, "unchanged") for p in all_paths if p not in listed
            ]
            diff.changes.sort(key=lambda c: (c.path, c.status))
        train_paths = [c.path for c in diff.changes if c.status != "deleted"]
        report = validate_taxonomy(root, paths=train_paths)
        report.problems = diff.warnings + report.problems
        report.raise_for_errors()
        for problem in report.warnings:
            log.warning(str(problem))
        leaves = {leaf.path: leaf for leaf in report.leaves}
        parts = prod.fingerprint_parts(prod.taxonomy_digest(root, all_paths), cfg.inputs)
        plan = prod.plan_run(
            parts=parts,
            changed_leaves=len(diff.changes) - sum(c.status == "unchanged" for c in diff.changes),
            production=production,
            base=cfg.base or DEFAULT_BASE,
            scope=cfg.scope,
            force=cfg.force,
        )
        if note:
            log.info("%s", note)
        log.info("%s", plan.reason)
        doc = diff.to_json()
        doc["counts"]["unchanged"] = sum(c.status == "unchanged" for c in diff.changes)
        doc.update(
            taxonomy=cfg.taxonomy,
            taxonomy_ref=cfg.taxonomy_ref,
            warnings=[str(p) for p in report.warnings],
            scope=cfg.scope,
            changed_leaves=changed_ids,
            base_note=note,
            plan=plan.to_json(),
        )
        for entry in doc["leaves"]:
            leaf = leaves.get(entry["path"])
            if leaf is None:  # deleted, or skipped with a warning (empty file)
                continue
            entry.update(kind=leaf.kind, version=leaf.version, leaf_digest=leaf.digest)
            if leaf.kind == "knowledge":
                entry["document_repo"] = _document_repo(str(leaf.data["document"]["repo"]), cfg.taxonomy)
        doc["leaves"] = [e for e in doc["leaves"] if e["status"] == "deleted" or "kind" in e]
        with atomic_dir(cfg.out) as out:
            for entry in doc["leaves"]:
                if entry["status"] == "deleted":
                    continue
                dest = out / LEAVES_DIR / entry["leaf_id"]
                dest.mkdir(parents=True, exist_ok=True)
                for name in (LEAF_FILE, ATTRIBUTION_FILE):
                    if (root / entry["leaf_id"] / name).is_file():
                        shutil.copyfile(root / entry["leaf_id"] / name, dest / name)
            (out / DIFF_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    counts = {f"leaves_{k}": v for k, v in doc["counts"].items()}
    meta = {
        "leaves": sum(1 for e in doc["leaves"] if e["status"] != "deleted"),
        **counts,
        "taxonomy_commit": doc["head_commit"],
        "base": cfg.base,
        "base_used": doc["base_used"],
        "merge_base": doc["merge_base"],
        "scope": cfg.scope,
        "leaves_changed": len(changed_ids),
        "train": plan.train,
        "plan": plan.reason,
        "fingerprint": plan.fingerprint,
        "production_version": (production.version if production else ""),
    }
    with maybe_stage_run(
        "taxonomy_diff",
        pipeline_run_id=cfg.run_id,
        tracking_uri=cfg.tracking_uri,
        params={
            "taxonomy": cfg.taxonomy,
            "taxonomy_ref": cfg.taxonomy_ref,
            "base": cfg.base,
            "taxonomy_commit": doc["head_commit"],
            "merge_base": doc["merge_base"],
            "scope": cfg.scope,
            "fingerprint": plan.fingerprint,
        },
    ) as run:
        run.log_metrics({k: v for k, v in meta.items() if isinstance(v, int) and not isinstance(v, bool)})
        run.set_tags({"labpipe.plan": plan.reason[:5000]})
        run.log_artifact(Path(cfg.out) / DIFF_FILE)
    return meta


def run_seed_extraction(cfg: SeedExtractionConfig) -> dict[str, Any]:
    """Turn the changed leaves of a taxonomy-diff output into seed records (JSONL at cfg.out)."""
    from labpipe.taxonomy.chunking import token_counter

    if cfg.chunk_tokens < 1:
        raise UserError(
            Problem(
                where="chunk_tokens",
                rule="chunk-tokens",
                field="chunk_tokens",
                message=f"chunk_tokens must be a positive number, not {cfg.chunk_tokens}",
                fix="pass e.g. --chunk-tokens 1000",
            )
        )
    count = token_counter(cfg.tokenizer)
    diff, records, problems = extract_seeds(cfg.diff, cfg.chunk_tokens, count)
    if any(p.severity == "error" for p in problems):
        raise UserError(problems)
    for problem in problems:
        log.warning(str(problem))
    with atomic_path(cfg.out) as tmp:
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    kinds = ("knowledge", "freeform_skill", "grounded_skill", "foundational_skill")
    meta: dict[str, Any] = {
        "records": len(records),
        **{f"leaves_{k}": sum(r["kind"] == k for r in records) for k in kinds},
        "seed_examples": sum(len(r["seed_examples"]) for r in records),
        "documents": sum(len(r.get("document", {}).get("files", [])) for r in records),
        "chunks": sum(len(r.get("chunks", [])) for r in records),
        "taxonomy_commit": diff.get("head_commit", ""),
        "base": diff.get("base_requested", ""),
        "base_used": diff.get("base_used", ""),
        "merge_base": diff.get("merge_base", ""),
    }
    if cfg.shard_plan_out:
        from labpipe.generation.shards import make_plan
        from labpipe.storage import write_text

        plan = make_plan(records, int(cfg.shards))
        write_text(cfg.shard_plan_out, json.dumps(plan, indent=1) + "\n")
        meta["shards"] = len(plan["shards"])
    with maybe_stage_run(
        "seed_extraction",
        pipeline_run_id=cfg.run_id,
        tracking_uri=cfg.tracking_uri,
        params={
            **{k: v for k, v in asdict(cfg).items() if k not in ("run_id", "tracking_uri")},
            "taxonomy_commit": meta["taxonomy_commit"],
        },
    ) as run:
        run.log_metrics({k: v for k, v in meta.items() if isinstance(v, int)})
    return meta

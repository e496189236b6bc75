"""The model in production, and whether anything that determines a new one changed since it was made.

A published version (evaluation/publish.py) carries the taxonomy commit and repository it was trained
from and a *fingerprint*: a digest over everything that determines the model (every leaf of the taxonomy
at that commit, the base model, teacher and judge, the generation flows and prompts, the training preset
and its parameters, the critique profile, the data-mixing settings). The weekly run diffs the taxonomy
against that commit (`base=production`) and ends early when the fingerprint is unchanged.

The fingerprint's parts are recorded too (`labpipe.fingerprint.parts`, JSON), so a run can say *what*
changed ("teacher", "taxonomy"), not only that something did.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError

# The alias of the version in production (MLflow 3: aliases, not stages), and the version tag holding its
# MT-Bench score (written by publish, read by the gate).
PRODUCTION_ALIAS = "production"
SCORE_TAG = "mt_bench.overall"
TAXONOMY_COMMIT_TAG = "labpipe.taxonomy.commit"
TAXONOMY_REPO_TAG = "labpipe.taxonomy.repo"
FINGERPRINT_TAG = "labpipe.fingerprint"
FINGERPRINT_PARTS_TAG = "labpipe.fingerprint.parts"
PRODUCTION_BASE = "production"  # the `base` value that means "the commit production was trained from"
SCOPES = ("taxonomy", "changed")


@dataclass
class ProductionModel:
    name: str
    version: str
    commit: str = ""  # taxonomy commit it was trained from ("" when published without it)
    repo: str = ""
    fingerprint: str = ""
    parts: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        commit = f"taxonomy commit {self.commit[:12]}" if self.commit else "no taxonomy commit recorded"
        return f"{self.name} version {self.version} ({commit})"


def production_version(name: str, tracking_uri: str):
    """The MLflow model version holding `name@production`: the one reader of the production model.

    None only when MLflow says the model `name` is not registered or has no `production` alias. Every other
    MLflow error (unreachable, HTTP 401/403, a workspace that does not exist, a 404 from something that is
    not MLflow) is a UserError saying what went wrong: never "there is no production model".
    """
    from mlflow.exceptions import MlflowException

    from labpipe.runs import tracking

    try:
        return tracking.mlflow_client(tracking_uri).get_model_version_by_alias(name, PRODUCTION_ALIAS)
    except MlflowException as exc:
        if _not_registered(exc, name):
            return None
        said, fix = tracking.explain(tracking_uri, exc)
        raise UserError(
            Problem(
                where=tracking_uri,
                rule="mlflow-registry",
                field="mlflow_tracking_uri",
                message=f"cannot read {name}@{PRODUCTION_ALIAS} from the MLflow registry: {said}",
                fix=fix,
            )
        ) from None


def _not_registered(exc: Exception, name: str) -> bool:
    """MLflow's own answer that `name` or its alias does not exist (its registry stores' messages), and
    nothing else: a missing workspace is RESOURCE_DOES_NOT_EXIST too, and a proxy's 404 says "Not Found"."""
    text = str(exc)
    return f"Registered Model with name={name} not found" in text or (
        f"registered model alias {PRODUCTION_ALIAS} not found" in text.lower()
    )


def find_production(name: str, tracking_uri: str) -> ProductionModel | None:
    """The version holding the `production` alias of registered model `name`; None when there is none."""
    version = production_version(name, tracking_uri)
    if version is None:
        return None
    tags = version.tags or {}
    try:
        parts = json.loads(tags.get(FINGERPRINT_PARTS_TAG, "{}"))
    except ValueError:
        parts = {}
    return ProductionModel(
        name=name,
        version=str(version.version),
        commit=tags.get(TAXONOMY_COMMIT_TAG, ""),
        repo=tags.get(TAXONOMY_REPO_TAG, ""),
        fingerprint=tags.get(FINGERPRINT_TAG, ""),
        parts=parts if isinstance(parts, dict) else {},
    )


@dataclass
class ModelInputs:
    """Everything besides the taxonomy that determines the trained model (pipeline parameters)."""

    base_model: str = ""
    teacher: str = ""  # "" = TEACHER_ENDPOINT (from the teacher secret)
    teacher_model: str = ""
    judge: str = ""
    judge_model: str = ""
    training_preset: str = "lab"
    max_steps: int = 0
    critique_profile: str = "lab"
    samples_per_skill_leaf: int = 30
    seed: int = 42
    chunk_tokens: int = 1000
    generation_gate: bool = True


def _package_digest(package: str, *subdirs: str, names: tuple[str, ...] = ()) -> str:
    """sha256 over the files of a data folder shipped in the library (flows, prompts, presets)."""
    h = hashlib.sha256()
    root = resources.files(package)
    for sub in subdirs:
        base = root.joinpath(sub)
        if not base.is_dir():
            h.update(f"missing:{sub}".encode())
            continue
        stack = [base]
        files = []
        while stack:
            node = stack.pop()
            for child in node.iterdir():
                (stack if child.is_dir() else files).append(child)
        for f in sorted(files, key=lambda p: str(p)):
            if names and f.name not in names and not any(f.name.endswith(n) for n in names):
                continue
            h.update(str(f).split(package.replace(".", "/"), 1)[-1].encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def taxonomy_digest(root: str | Path, leaf_paths: list[str]) -> str:
    """sha256 over every leaf file (path and bytes) of the taxonomy at `root`."""
    h = hashlib.sha256()
    root = Path(root)
    for path in sorted(leaf_paths):
        h.update(path.encode() + b"\0" + (root / path).read_bytes() + b"\0")
    return h.hexdigest()


def fingerprint_parts(taxonomy: str, inputs: ModelInputs) -> dict[str, str]:
    """The named parts of the fingerprint (readable where short, digests where long)."""
    teacher = inputs.teacher or os.environ.get("TEACHER_ENDPOINT", "")
    teacher_model = inputs.teacher_model or os.environ.get("TEACHER_MODEL", "")
    judge = inputs.judge or os.environ.get("JUDGE_ENDPOINT", "")
    judge_model = inputs.judge_model or os.environ.get("JUDGE_MODEL", "")
    return {
        "taxonomy": taxonomy,
        "base_model": inputs.base_model,
        "teacher": f"{teacher} {teacher_model}".strip(),
        "judge": f"{judge} {judge_model}".strip(),
        "flows": _package_digest("labpipe.generation", "flows", "prompts")[:16],
        "training": f"{inputs.training_preset} max_steps={inputs.max_steps} "
        + _package_digest("labpipe.training", f"phases/{inputs.training_preset}")[:16],
        "critique": f"{inputs.critique_profile} "
        + _package_digest("labpipe.critique", "profiles", names=(f"{inputs.critique_profile}.yaml",))[:16],
        "settings": json.dumps(
            {
                "samples_per_skill_leaf": inputs.samples_per_skill_leaf,
                "seed": inputs.seed,
                "chunk_tokens": inputs.chunk_tokens,
                "generation_gate": bool(inputs.generation_gate),
            },
            sort_keys=True,
        ),
    }


def fingerprint(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def changed_parts(now: dict[str, str], before: dict[str, str]) -> list[str]:
    """Names of the parts that differ (every part when `before` was not recorded)."""
    return sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))


@dataclass
class Plan:
    """What this run does: train, or end with 'nothing to do' (and why either way)."""

    train: bool
    reason: str
    fingerprint: str
    parts: dict[str, str]
    production: dict[str, Any] | None = None  # ProductionModel as a dict, when there is one
    changed: list[str] = field(default_factory=list)  # fingerprint parts that differ from production

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_run(
    *,
    parts: dict[str, str],
    changed_leaves: int,
    production: ProductionModel | None,
    base: str,
    scope: str,
    force: bool,
) -> Plan:
    """Train or not: nothing to do when production was built from exactly these inputs (unless forced)."""
    digest = fingerprint(parts)
    prod = asdict(production) if production else None
    if force:
        return Plan(True, "force=true: retraining whatever changed", digest, parts, prod)
    if base == PRODUCTION_BASE and production is not None and production.fingerprint:
        differ = changed_parts(parts, production.parts) if production.parts else []
        if production.fingerprint == digest and changed_leaves == 0:
            return Plan(
                False,
                f"nothing to do: nothing that determines the model changed since {production.describe()}",
                digest,
                parts,
                prod,
            )
        what = ", ".join(differ) if differ else "the fingerprint"
        return Plan(True, f"changed since {production.describe()}: {what}", digest, parts, prod, differ)
    if scope == "changed" and changed_leaves == 0:
        return Plan(
            False, f"nothing to do: no leaf changed against {base} (scope=changed)", digest, parts, prod
        )
    if base == PRODUCTION_BASE and production is None:
        return Plan(True, "no production model registered yet: training on every leaf", digest, parts, prod)
    return Plan(True, f"{changed_leaves} leaves changed against {base}", digest, parts, prod)


def nothing_to_do_report(diff_dir: str, out: str) -> dict[str, Any]:
    """A short Markdown report for a run that ends early; returns its facts (artifact metadata)."""
    from labpipe import storage
    from labpipe.paths import DIFF_FILE

    doc = json.loads(storage.read_text(storage.join(diff_dir, DIFF_FILE)))
    plan = doc.get("plan") or {}
    prod = plan.get("production") or {}
    lines = [
        "# Nothing to do",
        "",
        plan.get("reason", "nothing changed"),
        "",
        f"- taxonomy: {doc.get('taxonomy', '')} at {doc.get('head_commit', '')}",
        f"- diff base: {doc.get('base_requested', '')} = {doc.get('base_used', '')}",
    ]
    if prod:
        lines.append(
            f"- production: {prod.get('name')} version {prod.get('version')}, "
            f"trained from commit {prod.get('commit', '')}"
        )
    lines += ["- fingerprint: " + plan.get("fingerprint", ""), "", "Pass force=true to retrain anyway."]
    storage.write_text(out, "\n".join(lines) + "\n")
    return {
        "nothing_to_do": True,
        "reason": plan.get("reason", ""),
        "taxonomy_commit": doc.get("head_commit", ""),
        "production_version": str(prod.get("version", "")),
        "production_commit": prod.get("commit", ""),
    }

"""The quality gate: publish the candidate only if it beats the base and the current production model.

"Production" is the version under the alias `production` of a registered MLflow model (MLflow 3: aliases
replace stages); its MT-Bench score is the `mt_bench.overall` tag written when it was published. The
candidate passes a comparison when candidate >= other - tolerance (tolerance absorbs judge noise; 0 means
at least equal). An invalid evaluation, a missing score or an unscored production version never passes.
The decision and its reasons are written as JSON (the pipeline's decision artifact).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from labpipe import storage
from labpipe.errors import Problem, UserError
from labpipe.registry.production import PRODUCTION_ALIAS, SCORE_TAG, production_version


def decide_gate(
    candidate: float | None,
    base: float | None,
    production: float | None,
    *,
    tolerance: float = 0.0,
    invalid: bool = False,
    production_note: str = "",
) -> dict:
    """The decision {"publish": bool, "reasons": [...], scores...}; every comparison made is a reason."""
    reasons: list[str] = []
    ok = True
    if invalid:
        ok = False
        reasons.append("evaluation invalid: too many judgments failed, so it was not scored")
    if candidate is None:
        ok = False
        reasons.append("no candidate score")
    for label, other in (("base", base), ("production", production)):
        if other is None or candidate is None:
            continue
        passed = candidate >= other - tolerance
        ok &= passed
        verb = "beats" if candidate > other else "is within tolerance of" if passed else "is below"
        reasons.append(f"candidate {candidate:.3f} {verb} {label} {other:.3f} (tolerance {tolerance:g})")
    if base is None:
        ok = False
        reasons.append("no base score to compare with")
    if production_note:
        reasons.append(production_note)
        if production_note.startswith("cannot"):
            ok = False
    return {
        "publish": bool(ok),
        "reasons": reasons,
        "candidate": candidate,
        "base": base,
        "production": production,
        "tolerance": tolerance,
    }


def production_score(name: str, tracking_uri: str) -> tuple[float | None, str]:
    """(score, note) of the version aliased `production` of registered model `name`; (None, note) if none.

    Only "not registered / no such alias" is compared with the base only; any other MLflow error (down,
    401/403, no such workspace) fails the gate as a UserError (registry.production.production_version)."""
    version = production_version(name, tracking_uri)
    if version is None:
        return None, f"no model registered as {name}@{PRODUCTION_ALIAS}: compared with the base only"
    raw = (version.tags or {}).get(SCORE_TAG)
    try:
        return float(raw), f"production is {name} version {version.version}"
    except (TypeError, ValueError):
        return None, f"cannot compare: {name} version {version.version} has no {SCORE_TAG} tag"


@dataclass
class GateConfig:
    metrics: str  # metrics.json written by run_mt_bench (or its output directory)
    out: str  # where to write the decision JSON
    production_model_name: str = ""  # registered model whose `production` alias is compared; "" = none
    tolerance: float = 0.0
    run_id: str = ""
    tracking_uri: str = ""


def load_metrics(uri: str) -> dict:
    if not uri.endswith(".json"):
        uri = storage.join(uri, "metrics.json")
    try:
        return json.loads(storage.read_text(uri))
    except json.JSONDecodeError as exc:
        raise UserError(
            Problem(where=f"{uri}:{exc.lineno}:{exc.colno}", rule="json", message=exc.msg)
        ) from None


def gate_from_metrics(
    metrics: dict, *, production_model_name: str = "", tolerance: float = 0.0, tracking_uri: str = ""
) -> dict:
    scores = metrics.get("scores") or {}
    candidate = (scores.get(metrics.get("candidate", "candidate")) or {}).get("overall")
    base = (scores.get(metrics.get("base") or "base") or {}).get("overall")
    production, note = None, ""
    if production_model_name:
        if not tracking_uri:
            raise UserError(
                "the gate needs a tracking URI to look up the production model",
                fix="pass --tracking-uri or set MLFLOW_TRACKING_URI",
            )
        production, note = production_score(production_model_name, tracking_uri)
    decision = decide_gate(
        candidate,
        base,
        production,
        tolerance=tolerance,
        invalid=bool(metrics.get("invalid")),
        production_note=note,
    )
    decision.update(
        {
            "judge": metrics.get("judge", ""),
            "questions_sha256": metrics.get("questions_sha256", ""),
            "production_model_name": production_model_name,
            "candidate_scores": scores.get(metrics.get("candidate", "candidate")) or {},
        }
    )
    return decision


def run_gate(cfg: GateConfig) -> dict:
    """Decide from run_mt_bench's metrics; write the decision JSON; log it to MLflow. Returns the decision."""
    import os

    from labpipe.runs.tracking import maybe_stage_run

    tracking_uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    decision = gate_from_metrics(
        load_metrics(cfg.metrics),
        production_model_name=cfg.production_model_name,
        tolerance=cfg.tolerance,
        tracking_uri=tracking_uri,
    )
    storage.write_text(cfg.out, json.dumps(decision, indent=2) + "\n")
    with maybe_stage_run(
        "quality_gate",
        pipeline_run_id=cfg.run_id,
        tracking_uri=tracking_uri,
        params={"tolerance": cfg.tolerance, "production_model_name": cfg.production_model_name},
    ) as run:
        run.log_metrics({"gate.publish": float(decision["publish"])})
        run.set_tags({"labpipe.gate.reasons": " | ".join(decision["reasons"])[:5000]})
        if not storage.is_s3(cfg.out):
            run.log_artifact(cfg.out, "gate")
    return decision

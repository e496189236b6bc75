"""Publishing: register the candidate in the MLflow model registry and point the alias `production` at it.

A local model directory is logged as artifacts of the publish run (source `runs:/<run>/model`); an s3://
model is registered in place (source = its URI). The version carries the MT-Bench scores as tags, which
the next gate reads to compare against production.
"""

from __future__ import annotations

import json
import os

from labpipe import storage
from labpipe.errors import UserError
from labpipe.registry.production import PRODUCTION_ALIAS, SCORE_TAG
from labpipe.runs.lineage import provenance_tags


def publish_model(
    candidate: str,
    decision: str | dict,
    production_model_name: str,
    *,
    run_id: str = "",
    tracking_uri: str = "",
    source_uri: str = "",
    pipeline_run_name: str = "",
    model_registry: str = "",
    taxonomy_diff: str = "",
) -> str:
    """Register `candidate` under `production_model_name` and alias it `production`; returns the version.

    Refuses (UserError) when the decision says not to publish: the gate's "no" is final.
    `source_uri`: where the candidate lives durably (an s3:// URI, e.g. the KFP artifact's URI when
    `candidate` is the task's local view of it): registered in place, no second copy.
    `model_registry`: also register the version in the Kubeflow Model Registry at that URL ("" = off).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from labpipe.runs.tracking import maybe_stage_run

    if isinstance(decision, str):
        decision = json.loads(storage.read_text(decision))
    if not decision.get("publish"):
        raise UserError(f"the gate decided not to publish: {'; '.join(decision.get('reasons', []))}")
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not tracking_uri or not production_model_name:
        raise UserError(
            "publishing needs a tracking URI and a registered model name",
            fix="pass --tracking-uri (or set MLFLOW_TRACKING_URI) and --name",
        )
    with maybe_stage_run(
        "publish_model",
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        params={"candidate": candidate, "registered_model": production_model_name},
    ) as run:
        if storage.is_s3(source_uri or candidate):
            source = source_uri or candidate
        else:
            local = storage.materialize_dir(candidate)
            run.client.log_artifacts(run.run_id, str(local), "model")
            source = f"runs:/{run.run_id}/model"
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            client.create_registered_model(production_model_name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        scores = decision.get("candidate_scores") or {}
        tags = {
            SCORE_TAG: decision.get("candidate"),
            "mt_bench.turn1": scores.get("turn1"),
            "mt_bench.turn2": scores.get("turn2"),
            "mt_bench.judge": decision.get("judge", ""),
            "mt_bench.questions_sha256": decision.get("questions_sha256", ""),
            "labpipe.candidate": source_uri or candidate,
        }
        tags.update(provenance_tags(tracking_uri, run_id, decision, pipeline_run_name))
        tags.update(_production_tags(taxonomy_diff))  # what the next weekly run compares with
        version = client.create_model_version(
            production_model_name,
            source=source,
            run_id=run.run_id,
            tags={k: str(v) for k, v in tags.items() if v is not None},
            description="; ".join(decision.get("reasons", []))[:5000],
        )
        client.set_registered_model_alias(production_model_name, PRODUCTION_ALIAS, version.version)
        run.set_tags({"labpipe.published_version": version.version})
        if model_registry:
            from labpipe.registry.model_registry import register_version

            registered = register_version(
                model_registry,
                production_model_name,
                str(version.version),
                source,
                properties={k: str(v) for k, v in tags.items() if v is not None},
                description="; ".join(decision.get("reasons", [])),
            )
            run.set_tags({f"labpipe.model_registry.{k}": v for k, v in registered.items()})
    return str(version.version)


def _production_tags(taxonomy_diff: str) -> dict[str, str]:
    """What the next weekly run compares with: taxonomy commit and repository, and the fingerprint."""
    if not taxonomy_diff:
        return {}
    from labpipe.paths import DIFF_FILE
    from labpipe.registry import production

    doc = json.loads(storage.read_text(storage.join(taxonomy_diff, DIFF_FILE)))
    plan = doc.get("plan") or {}
    return {
        production.TAXONOMY_COMMIT_TAG: doc.get("head_commit", ""),
        production.TAXONOMY_REPO_TAG: doc.get("taxonomy", ""),
        production.FINGERPRINT_TAG: plan.get("fingerprint", ""),
        production.FINGERPRINT_PARTS_TAG: json.dumps(plan.get("parts") or {}, sort_keys=True)[:5000],
    }

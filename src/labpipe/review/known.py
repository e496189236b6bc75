"""The review's "already known" check (review/stage.py runs it): the production model (else the base
model) answers each changed leaf's seed questions and the MT-Bench judge scores them against the seed
answers (`run_mt_bench` with the branch-evaluation questions of `evaluation.branch`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from labpipe.errors import UserError

log = logging.getLogger(__name__)


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


def already_known(config, work, records, reviews, production) -> None:

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
    except (
        UserError
    ) as exc:  # the judge rated too few answers: "already known" is undecided (said on the page and
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

"""`run_mt_bench`: answers from candidate and base, judged, aggregated, reported; metrics for the gate.

Output directory (a local path or s3:// prefix; it appears only when complete):
    model_answer/<model>.jsonl            FastChat answer files
    model_judgment/<judge>_single.jsonl   FastChat judgment file (all models)
    metrics.json                          scores, exclusions, validity (read by the gate)
    report.md, report.html, categories.png
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from labpipe import storage
from labpipe.errors import Problem, UserError
from labpipe.evaluation.aggregate import ModelScores, aggregate, format_table
from labpipe.evaluation.engines import EngineConfig
from labpipe.evaluation.fastchat_io import attach_references, write_jsonl
from labpipe.evaluation.questions import Question, load_questions
from labpipe.llm.options import ClientOptions
from labpipe.runs.tracking import maybe_stage_run

log = logging.getLogger(__name__)
JUDGE_MODES = ("auto", "reference", "structured")


@dataclass
class EvalConfig:
    model: str  # candidate: local model dir, s3:// prefix, or an OpenAI-compatible endpoint URL (/v1)
    judge: ClientOptions  # the judge: its endpoint (same forms), model name (also names the judgment file), key...
    out: str
    base_model: str = ""  # "" = no base comparison
    model_name: str = "candidate"  # model id in the FastChat files
    base_name: str = "base"
    model_endpoint_name: str = ""  # model name sent to an endpoint (candidate / base)
    base_endpoint_name: str = ""
    model_api_key_env: str = ""  # variable holding the candidate endpoint's key ("" = OPENAI_API_KEY)
    base_api_key_env: str = ""  # variable holding the base endpoint's key ("" = OPENAI_API_KEY)
    questions: str = ""  # question.jsonl or a data dir (path, s3://, URL); "" = FastChat's pinned file
    judge_prompts: str = ""  # "" = in the data dir, else FastChat's pinned file
    reference_answers: str = ""  # "" = in the data dir, else FastChat's pinned gpt-4 references
    verify: bool = True  # require FastChat's sha256 for the three files
    max_questions: int = 0  # 0 = all 80; > 0 = a category-stratified subset (smoke runs)
    max_new_tokens: int = 1024
    judge_mode: str = "auto"  # auto: reference prompts+parsing for endpoints, schema-constrained in-process
    judge_attempts: int = 3
    max_failed_share: float = 0.1  # more failed judgments than this (per model) = invalid: the stage fails
    # the clients of the models under test (the judge's are in `judge`)
    batch_size: int = 16
    concurrency: int = 32
    max_retries: int = 6  # per endpoint request (transport errors, 429, 5xx)
    timeout_s: float = 120.0  # per HTTP attempt
    regressions: int = 5
    run_id: str = ""
    tracking_uri: str = ""
    extra_questions: list[Question] = field(default_factory=list)  # e.g. taxonomy branch questions
    include_mt_bench: bool = True  # False: only extra_questions (branch evaluation)
    # what answers for a model directory: hf in-process, a vllm / llamacpp server (evaluation/engines.py)
    engine: EngineConfig = field(default_factory=EngineConfig)
    cache: str = "off"  # answers and verdicts reused across runs: the generation cache ("" = local, s3://)

    def answer_options(self, api_key_env: str = "") -> dict:
        """The ModelSpec fields of a model under test (candidate, base) but its target and name."""
        return {
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "api_key_env": api_key_env or "OPENAI_API_KEY",
            "max_retries": self.max_retries,
            "timeout_s": self.timeout_s,
        }

    def model_spec(self, target: str, endpoint_name: str = "", api_key_env: str = ""):
        """The ModelSpec of a model under test (candidate, base)."""
        from labpipe.llm.types import ModelSpec

        return ModelSpec(target=target, model=endpoint_name or None, **self.answer_options(api_key_env))

    def validate(self) -> None:
        problems = []
        if self.judge_mode not in JUDGE_MODES:
            problems.append(f"judge_mode must be one of {', '.join(JUDGE_MODES)}, not {self.judge_mode!r}")
        if not self.model:
            problems.append("no model to evaluate (--model)")
        if not self.judge.endpoint:
            problems.append("no judge (--judge)")
        if not 0 <= self.max_failed_share <= 1:
            problems.append("max_failed_share must be between 0 and 1")
        if problems:
            raise UserError("; ".join(problems))
        self.engine.validate()


def judge_label(cfg: EvalConfig) -> str:
    name = cfg.judge.model or Path(cfg.judge.endpoint.rstrip("/")).name or "judge"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def load_mt_bench(cfg: EvalConfig) -> tuple[list[Question], dict, str]:
    """(questions with references, judge prompts, questions sha256)."""
    from labpipe.evaluation.prompts import load_judge_prompts

    data_dir = (
        cfg.questions
        if cfg.questions
        and not cfg.questions.endswith(".jsonl")
        and not cfg.questions.startswith(("http://", "https://"))
        else ""
    )
    questions, digest = [], ""
    if cfg.include_mt_bench:
        questions, digest = load_questions(cfg.questions, verify=cfg.verify, max_questions=cfg.max_questions)
        questions = attach_references(questions, cfg.reference_answers, data_dir=data_dir, verify=cfg.verify)
    prompts = load_judge_prompts(cfg.judge_prompts, data_dir=data_dir, verify=cfg.verify)
    if cfg.extra_questions:
        import hashlib

        extra = json.dumps([[q.question_id, q.turns, q.reference] for q in cfg.extra_questions]).encode()
        digest = hashlib.sha256(digest.encode() + extra).hexdigest()
    if not questions and not cfg.extra_questions:
        raise UserError("no questions to evaluate")
    return questions + list(cfg.extra_questions), prompts, digest


def _flat(prefix: str, s: ModelScores | None) -> dict[str, float]:
    if s is None:
        return {}
    out = {f"{prefix}.overall": s.overall, f"{prefix}.turn1": s.turn1, f"{prefix}.turn2": s.turn2}
    out.update({f"{prefix}.category.{c}": v for c, v in s.categories.items()})
    return {k: v for k, v in out.items() if v is not None}


def run_mt_bench(cfg: EvalConfig) -> dict:
    """Evaluate candidate (and base) on MT-Bench; returns the metadata/metrics dict (also metrics.json)."""
    from labpipe.evaluation.answering import answer_model, judge_client_cached
    from labpipe.evaluation.judge import judge_answers
    from labpipe.evaluation.report import regressions, write_report
    from labpipe.llm.cache import open_cache
    from labpipe.llm.client import make_client
    from labpipe.llm.options import model_spec

    cfg.validate()
    questions, prompts, digest = load_mt_bench(cfg)
    judge_spec = model_spec(cfg.judge)
    structured = cfg.judge_mode == "structured" or (cfg.judge_mode == "auto" and not judge_spec.is_endpoint)
    judge_name = judge_label(cfg)
    targets = {cfg.model_name: (cfg.model, cfg.model_endpoint_name)}
    if cfg.base_model:
        targets[cfg.base_name] = (cfg.base_model, cfg.base_endpoint_name)
    key_envs = {cfg.model_name: cfg.model_api_key_env, cfg.base_name: cfg.base_api_key_env}

    params = {
        "questions": len(questions),
        "questions_sha256": digest,
        "judge_mode": "structured" if structured else "reference",
        "max_new_tokens": cfg.max_new_tokens,
        "max_failed_share": cfg.max_failed_share,
        "engine": cfg.engine.kind,
        **{f"judge.{k}": v for k, v in judge_spec.describe().items()},
    }
    for label, (target, name) in targets.items():
        params.update({f"{label}.{k}": v for k, v in cfg.model_spec(target, name).describe().items()})

    with maybe_stage_run(
        "mt_bench_eval", pipeline_run_id=cfg.run_id, tracking_uri=cfg.tracking_uri, params=params
    ) as run:
        cache = open_cache(cfg.cache)
        judge_client = make_client(judge_spec)
        reuse = {}
        try:
            if judge_spec.is_endpoint:
                judge_client.model_name  # noqa: B018 - an unreachable judge fails now, not after the answers
            answers = {}
            with tempfile.TemporaryDirectory(prefix="mt-bench-engine-") as workdir:
                for label, (target, name) in targets.items():
                    done = answer_model(cfg, target, questions, label, cache=cache, workdir=workdir,
                                        endpoint_name=name, key_env=key_envs.get(label, ""))
                    answers[label] = done.answers
                    reuse[label] = {**done.reuse.as_dict(), "engine": done.engine, "engine_starts": done.starts}
            judge_client = judge_client_cached(judge_client, judge_spec, cache)
            judged = judge_answers(
                judge_client,
                prompts,
                questions,
                answers,
                judge_name=judge_name,
                structured=structured,
                attempts=cfg.judge_attempts,
            )
        finally:
            judge_client.close()
            if cache is not None:
                cache.close()
        _check_judge_errors(judged, cfg, judge_spec.target)

        scores = aggregate(judged.judgments, {q.question_id: q.category for q in questions})
        invalid = any(s.failed_share > cfg.max_failed_share for s in scores.values())
        summary = {
            "invalid": invalid,
            "judge": judge_name,
            "judge_mode": params["judge_mode"],
            "questions": len(questions),
            "questions_sha256": digest,
            "excluded": sum(judged.excluded.values()),
            "excluded_reasons": dict(judged.excluded),
            "judge_errors": {
                kind: {"count": n, "example": judged.error_examples.get(kind, "")}
                for kind, n in judged.errors.most_common()
            },
            "judge_requests": judged.requests,
            "judge_requests_sent": getattr(getattr(judge_client, "reuse", None), "sent", judged.requests),
            "answers": reuse,  # per model: asked, cached (reused), sent; the engine and its starts
            "candidate": cfg.model_name,
            "base": cfg.base_name if cfg.base_model else "",
        }
        shown = {label: scores[label].to_dict() for label in targets if label in scores}
        metrics = {**summary, "scores": {} if invalid else shown, "unscored": shown if invalid else {}}
        flat = (
            {}
            if invalid
            else {
                **_flat("candidate", scores.get(cfg.model_name)),
                **(_flat("base", scores.get(cfg.base_name)) if cfg.base_model else {}),
            }
        )

        with _output_dir(cfg.out) as tmp:
            for label, rows in answers.items():
                write_jsonl(tmp / "model_answer" / f"{label}.jsonl", rows)
            write_jsonl(tmp / "model_judgment" / f"{judge_name}_single.jsonl", judged.judgments)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
            regs = (
                regressions(judged.judgments, questions, cfg.model_name, cfg.base_name, cfg.regressions)
                if cfg.base_model
                else []
            )
            files = write_report(tmp, summary, shown, regs)
            run.log_metrics({f"mt_bench.{k}": v for k, v in flat.items()})
            run.log_metrics({"mt_bench.excluded": summary["excluded"], "mt_bench.invalid": float(invalid)})
            run.log_metrics({f"mt_bench.answers.{label}.{k}": float(v) for label, r in reuse.items()
                             for k, v in r.items() if k in ("asked", "cached", "sent", "engine_starts")})
            run.log_metrics({f"mt_bench.judge_errors.{k}": float(n) for k, n in judged.errors.items()})
            for path in (*files.values(), tmp / "metrics.json"):
                run.log_artifact(path, "mt_bench")
            run.log_artifact(tmp / "model_judgment" / f"{judge_name}_single.jsonl", "mt_bench")
        log.info("%s", format_table({k: scores[k] for k in targets if k in scores}))
        if invalid:  # the outputs above are kept for diagnosis; the stage itself fails (nothing to gate on)
            error = _invalid(scores, judged, cfg, judge_spec.target)
            run.set_tags({"labpipe.error": str(error)[:5000]})
            raise error
    return {
        **{k: v for k, v in summary.items() if k not in ("excluded_reasons", "judge_errors", "answers")},
        "answers_sent": sum(r["sent"] for r in reuse.values()),
        "answers_cached": sum(r["cached"] for r in reuse.values()),
        "engine_starts": sum(r["engine_starts"] for r in reuse.values()),
        **flat,
        **{f"excluded.{k}": v for k, v in judged.excluded.items()},
        "mlflow_run_id": run.run_id,
    }


def _check_judge_errors(judged, cfg: EvalConfig, judge: str) -> None:
    """Judge calls that failed for good (not unrated verdicts) above `max_failed_share`: the stage fails,
    with the server's reasons grouped and counted."""
    failed = judged.excluded.get("judge_error", 0)
    total = len(judged.judgments) - judged.excluded.get("answer_error", 0)
    if failed == 0 or failed <= cfg.max_failed_share * total:
        return
    reasons = "; ".join(
        f"{n} {kind} (e.g. {judged.error_examples.get(kind, '')!r})" for kind, n in judged.errors.most_common()
    )
    from labpipe.llm.failures import TRANSIENT_KINDS

    deterministic = sum(n for kind, n in judged.errors.items() if kind not in TRANSIENT_KINDS)
    raise UserError(
        Problem(
            judge,
            "judge-failed",
            f"{failed} of {total} judge calls failed after all retries (allowed: {cfg.max_failed_share:.0%}): "
            f"{reasons}",
            "fix the cause above (or raise --max-failed-share) and rerun",
            field="max_failed_share",
        ),
        transient=deterministic <= cfg.max_failed_share * total,  # a retry may get past a server's trouble
    )


def _invalid(scores: dict[str, ModelScores], judged, cfg: EvalConfig, judge: str) -> UserError:
    """The invalid evaluation as one problem: which model lost how many judgments, the judge's error kinds
    with an example each (and what an unrated reply said)."""
    models = "; ".join(
        f"{label}: {s.excluded} of {s.judged + s.excluded} judgments without a rating"
        for label, s in scores.items()
        if s.failed_share > cfg.max_failed_share
    )
    excluded = ", ".join(f"{n} {why}" for why, n in judged.excluded.most_common())
    kinds = [*judged.errors.most_common(), *([("no_rating", judged.excluded["no_rating"])]
                                             if judged.excluded.get("no_rating") else [])]  # fmt: skip
    reasons = "; ".join(f"{n} {kind} (e.g. {judged.error_examples.get(kind, '')!r})" for kind, n in kinds)
    return UserError(
        Problem(
            judge,
            "evaluation-invalid",
            f"the MT-Bench evaluation is invalid ({models}; allowed: {cfg.max_failed_share:.0%}); "
            f"excluded: {excluded}" + (f"; judge errors: {reasons}" if reasons else ""),
            "fix the judge (its endpoint, model, context length, or the judge prompts' rating format) and "
            "rerun; the judgments and report are in the output directory",
            field="judge",
        )
    )


@contextmanager
def _output_dir(out: str) -> Iterator[Path]:
    """A local directory that becomes `out` only when complete (atomic rename, or one upload for s3://)."""
    if not storage.is_s3(out):
        with storage.atomic_dir(out) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        yield Path(tmp)
        storage.publish_dir(tmp, out)

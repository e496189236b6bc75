"""`labpipe evaluate ...`: MT-Bench evaluation, scoring of FastChat judgment files, checkpoint selection,
the quality gate and publishing.

    labpipe evaluate mt-bench --model M --judge J [--base-model B] --out DIR [--questions PATH|DIR|s3://|URL]
    labpipe evaluate mt-bench score --judgments FILE [--questions ...]
    labpipe evaluate branch --records SEEDS.jsonl --model M --base-model B --judge J --out DIR
    labpipe evaluate select-checkpoint --model-dir TRAINING_OUT --judge J --out DIR [--strategy best|last]
    labpipe evaluate gate --metrics EVAL_DIR --out decision.json [--production-model-name NAME --tolerance T]
    labpipe evaluate publish --model M --decision decision.json --name NAME
"""

from __future__ import annotations

import argparse
import json


def _eval_options(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    if model:
        p.add_argument(
            "--model", help="model under test: local HF directory, s3:// prefix or endpoint URL (/v1)"
        )
        p.add_argument("--base-model", default="", help="base model to compare with (same forms)")
        p.add_argument("--model-name", default="candidate", help="model id in the FastChat files")
        p.add_argument("--base-name", default="base", help="name of the base model in the report")
        p.add_argument(
            "--model-endpoint-name",
            default="",
            help="model name sent to the --model endpoint (default: the first model it lists)",
        )
        p.add_argument("--base-endpoint-name", default="", help="model name sent to the --base-model endpoint")
        p.add_argument(
            "--model-api-key-env", default="", help="variable holding the --model endpoint's key (default OPENAI_API_KEY)"
        )
        p.add_argument(
            "--base-api-key-env", default="", help="variable holding the --base-model endpoint's key (default OPENAI_API_KEY)"
        )
    p.add_argument("--judge", help="judge: endpoint URL (/v1) or local HF directory / s3:// prefix")
    p.add_argument(
        "--judge-model", default="", help="model name at the judge endpoint (names the judgment file)"
    )
    p.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="variable holding the judge endpoint's key"
    )
    p.add_argument(
        "--judge-mode",
        default="auto",
        choices=["auto", "reference", "structured"],
        help="auto: reference prompts and parsing for endpoints, JSON-schema verdicts in-process",
    )
    p.add_argument(
        "--judge-prompts",
        default="",
        help="judge_prompts.jsonl (default: in --questions DIR, else FastChat's pinned file)",
    )
    p.add_argument(
        "--reference-answers",
        default="",
        help="reference answers (default: in --questions DIR, else FastChat's pinned gpt-4.jsonl)",
    )
    p.add_argument(
        "--no-verify", action="store_true", help="accept files that differ from FastChat's (custom sets)"
    )
    p.add_argument("--max-questions", type=int, default=0, help="0 = all 80; N = category-stratified subset")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="answer length of the model under test")
    p.add_argument("--judge-attempts", type=int, default=3, help="tries per judgment before it is excluded")
    p.add_argument(
        "--max-failed-share",
        type=float,
        default=0.1,
        help="above this share of unrated judgments (per model) the evaluation is invalid and fails (default 0.1)",
    )
    p.add_argument(
        "--context-length",
        type=int,
        default=0,
        help="the judge's context window in tokens (default: what GET /v1/models reports); caps max_tokens",
    )
    p.add_argument("--batch-size", type=int, default=16, help="in-process prompts per generate() call")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent endpoint requests")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP attempt (default 120)")
    p.add_argument("--max-retries", type=int, default=6, help="retries of 429/5xx/timeouts (default 6)")
    p.add_argument("--run-id", default="", help="pipeline run id (MLflow parent run)")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    p.add_argument(
        "--engine", default="hf", choices=["hf", "vllm", "llamacpp", "endpoint"],
        help="what answers for a model directory: hf (in-process, default), vllm (a vLLM server on the visible "
        "GPUs), llamacpp (llama.cpp's server on a GGUF export, CPU), endpoint (--model is a served URL)",
    )
    p.add_argument("--engine-gpus", type=int, default=0, help="vLLM tensor-parallel size (0 = every visible GPU)")
    p.add_argument("--engine-context", type=int, default=0, help="server context per answer (0 = the model's)")
    p.add_argument("--engine-startup-timeout", type=float, default=1800.0, help="seconds to wait for the server")
    p.add_argument(
        "--cache", default="off",
        help="reuse answers and verdicts across runs: the generation cache (a directory or s3:// prefix; "
        "'' = under $LABPIPE_CACHE; default off)",
    )


def register(sub) -> None:
    evaluate = sub.add_parser("evaluate", help="MT-Bench evaluation, checkpoint selection, gate, publish")
    actions = evaluate.add_subparsers(dest="evaluate_command", metavar="ACTION")

    mt = actions.add_parser("mt-bench", help="answer, judge and score MT-Bench: candidate vs base")
    _eval_options(mt)
    mt.add_argument(
        "--questions",
        default="",
        help="question.jsonl or a data dir with question.jsonl, "
        "judge_prompts.jsonl, reference_answer/gpt-4.jsonl (path, s3://, URL); "
        "default: FastChat's files at a pinned commit, sha256-verified, cached",
    )
    mt.add_argument("--out", help="output directory (local or s3://)")
    mt.set_defaults(func=mt_bench_command)
    mt_actions = mt.add_subparsers(dest="mt_bench_action", metavar="{score}", required=False)
    score = mt_actions.add_parser("score", help="print the score table of a FastChat judgment file")
    score.add_argument(
        "--judgments", required=True, help="model_judgment/<judge>_single.jsonl (path or s3://)"
    )
    score.add_argument(
        "--questions", default="", help="questions, for per-category scores (file or data dir)"
    )
    score.add_argument("--no-verify", action="store_true", help="accept files that differ from FastChat's")
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    score.set_defaults(func=score_command)

    br = actions.add_parser(
        "branch", help="judge the changed taxonomy leaves' seed examples: base vs candidate"
    )
    br.add_argument("--records", required=True, help="seed-extraction records JSONL of the changed leaves")
    br.add_argument("--out", required=True, help="output directory (local or s3://)")
    br.add_argument(
        "--questions", default="", help="data dir holding judge_prompts.jsonl (or --judge-prompts)"
    )
    _eval_options(br)
    br.set_defaults(func=branch_command)

    sel = actions.add_parser(
        "select-checkpoint", help="score training checkpoints and keep the best (or last)"
    )
    sel.add_argument(
        "--model-dir", required=True, help="training output: checkpoints/checkpoint-<step>/, model/"
    )
    sel.add_argument("--out", required=True, help="output directory (local or s3://)")
    sel.add_argument("--strategy", default="best", choices=["best", "last"],
                     help="best: score every kept checkpoint; last: the final one")
    sel.add_argument("--steps", default="", help="comma-separated steps to score (default: all)")
    sel.add_argument("--max-checkpoints", type=int, default=0, help="score at most this many (0: all)")
    sel.add_argument("--questions", default="", help="MT-Bench data: folder, file, s3:// or URL ('': the default)")
    _eval_options(sel, model=False)
    sel.set_defaults(func=select_command)

    gate = actions.add_parser("gate", help="decide whether to publish: candidate vs base and production")
    gate.add_argument("--metrics", required=True, help="the mt-bench output directory or its metrics.json")
    gate.add_argument("--out", required=True, help="decision JSON to write")
    gate.add_argument(
        "--production-model-name", default="", help="registered model whose @production to beat"
    )
    gate.add_argument("--gate-tolerance", "--tolerance", dest="tolerance", type=float, default=0.0,
                      help="how far below base/production the candidate may score (the pipeline's gate_tolerance)")
    gate.add_argument("--run-id", default="", help="pipeline run id (MLflow parent run)")
    gate.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    gate.set_defaults(func=gate_command)

    pub = actions.add_parser("publish", help="register the candidate and alias it `production` (MLflow)")
    pub.add_argument("--model", required=True, help="model directory to register (local or s3://)")
    pub.add_argument("--decision", required=True, help="the gate's decision JSON")
    pub.add_argument("--name", required=True, help="registered model name")
    pub.add_argument("--run-id", default="", help="pipeline run id (MLflow parent run)")
    pub.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    pub.set_defaults(func=publish_command)


def _config(args: argparse.Namespace, **overrides):
    import logging

    from labpipe.commands.generation import client_options_from
    from labpipe.evaluation.engines import EngineConfig
    from labpipe.evaluation.stage import EvalConfig

    if not getattr(args, "verbose", False):  # httpx logs one INFO line per request
        logging.getLogger("httpx").setLevel(logging.WARNING)

    return EvalConfig(
        model=getattr(args, "model", None) or "",
        judge=client_options_from(args, args.judge or "", args.judge_model),
        out=getattr(args, "out", "") or "",
        base_model=getattr(args, "base_model", ""),
        model_name=getattr(args, "model_name", "candidate"),
        base_name=getattr(args, "base_name", "base"),
        model_endpoint_name=getattr(args, "model_endpoint_name", ""),
        base_endpoint_name=getattr(args, "base_endpoint_name", ""),
        model_api_key_env=getattr(args, "model_api_key_env", ""),
        base_api_key_env=getattr(args, "base_api_key_env", ""),
        questions=args.questions,
        judge_prompts=args.judge_prompts,
        reference_answers=args.reference_answers,
        verify=not args.no_verify,
        max_questions=args.max_questions,
        max_new_tokens=args.max_new_tokens,
        judge_mode=args.judge_mode,
        judge_attempts=args.judge_attempts,
        max_failed_share=args.max_failed_share,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        max_retries=args.max_retries,
        run_id=args.run_id,
        tracking_uri=args.tracking_uri,
        engine=EngineConfig(
            kind=args.engine, gpus=args.engine_gpus, context=args.engine_context,
            startup_timeout_s=args.engine_startup_timeout,
        ),
        cache=args.cache,
        **overrides,
    )


def mt_bench_command(args: argparse.Namespace) -> int:
    from labpipe.errors import UserError
    from labpipe.evaluation.stage import run_mt_bench

    if not args.out:
        raise UserError("--out is required", fix="labpipe evaluate mt-bench --model M --judge J --out DIR")
    meta = run_mt_bench(_config(args))
    print(json.dumps(meta, indent=2))
    return 0


def score_command(args: argparse.Namespace) -> int:
    from labpipe.evaluation.aggregate import aggregate, format_table
    from labpipe.evaluation.fastchat_io import read_judgments
    from labpipe.evaluation.questions import load_questions

    categories = None
    if args.questions:
        questions, _ = load_questions(args.questions, verify=not args.no_verify)
        categories = {q.question_id: q.category for q in questions}
    scores = aggregate(read_judgments(args.judgments), categories)
    print(
        json.dumps({m: s.to_dict() for m, s in scores.items()}, indent=2)
        if args.json
        else format_table(scores)
    )
    return 0


def branch_command(args: argparse.Namespace) -> int:
    from labpipe.evaluation.branch import run_branch_eval

    print(json.dumps(run_branch_eval(_config(args), args.records), indent=2))
    return 0


def select_command(args: argparse.Namespace) -> int:
    from labpipe.evaluation.select import SelectConfig, select_checkpoint

    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    selection = select_checkpoint(
        SelectConfig(
            model_dir=args.model_dir,
            out=args.out,
            eval=_config(args),
            strategy=args.strategy,
            steps=steps,
            max_checkpoints=args.max_checkpoints,
        )
    )
    print(json.dumps(selection, indent=2))
    return 0


def gate_command(args: argparse.Namespace) -> int:
    from labpipe.evaluation.gate import GateConfig, run_gate

    decision = run_gate(
        GateConfig(
            metrics=args.metrics,
            out=args.out,
            production_model_name=args.production_model_name,
            tolerance=args.tolerance,
            run_id=args.run_id,
            tracking_uri=args.tracking_uri,
        )
    )
    print(json.dumps(decision, indent=2))
    return 0


def publish_command(args: argparse.Namespace) -> int:
    from labpipe.registry.publish import publish_model

    version = publish_model(
        args.model, args.decision, args.name, run_id=args.run_id, tracking_uri=args.tracking_uri
    )
    print(f"published {args.model} as {args.name} version {version} (alias production)")
    return 0

"""`labpipe review`: review a taxonomy contribution before it is merged (labpipe.review, docs/review.md)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "review",
        help="review the leaves a taxonomy branch changes: validation, overlap, a generation sample and its "
        "critique yield, documents, already known, cost; a verdict per leaf (exit 1 on fail)",
    )
    p.add_argument("--taxonomy", help="taxonomy git URL, local repository or directory (required)")
    p.add_argument(
        "--ref", default="", help="the contribution: branch, tag or commit (default: the work tree)"
    )
    p.add_argument(
        "--base",
        default="production",
        help="diff base: production (the taxonomy commit of the production model, as the weekly run), "
        "a ref, or empty (default: production)",
    )
    p.add_argument(
        "--out",
        default="review",
        help="output directory or s3:// prefix: review.html, review.md, review.json (default: ./review)",
    )
    p.add_argument(
        "--leaf",
        action="append",
        default=[],
        metavar="LEAF_ID",
        help="review only this changed leaf (repeatable; default: every changed leaf)",
    )
    p.add_argument(
        "--base-model",
        default="",
        help="base model dir or s3:// URI: chunk tokenizer, and the model "
        "asked the seed questions when no production model exists",
    )
    p.add_argument(
        "--teacher", default="", help="teacher URL (…/v1) or model dir (default: TEACHER_ENDPOINT)"
    )
    p.add_argument("--teacher-model", default="", help="model name at the teacher endpoint (the run's teacher_model)")
    p.add_argument(
        "--judge", default="", help="judge URL or model dir (default: JUDGE_ENDPOINT, else the teacher)"
    )
    p.add_argument("--judge-model", default="", help="model name at the judge endpoint (the run's judge_model)")
    p.add_argument("--api-key-env", default="", help="variable holding the endpoints' API key")
    p.add_argument(
        "--sample-size",
        type=int,
        default=2,
        help="first-step teacher requests per leaf in the generation sample (default 2)",
    )
    p.add_argument("--critique-profile", default="lab", help="lab | smoke | a profile YAML (as the run's)")
    p.add_argument(
        "--no-generation-gate",
        dest="generation_gate",
        action="store_false",
        help="as the run's generation_gate=false (the tiny model's runs)",
    )
    p.add_argument("--chunk-tokens", type=int, default=1000, help="document chunk size in base-model tokens, as the run's (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="the run's seed (critique requests)")
    p.add_argument(
        "--generation-cache", default="", help="shared reply cache, as the run's (s3://…; default local)"
    )
    p.add_argument("--response-format", default="auto", help="structured replies: auto | json_schema | json_object | prompt, as the run's (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (default: %(default)s)")
    p.add_argument(
        "--questions",
        default="",
        help="MT-Bench data dir for the judge prompts "
        "(default: LABPIPE_MT_BENCH_DATA, else FastChat's pinned files)",
    )
    p.add_argument("--known-questions", type=int, default=5, help="seed questions asked per leaf (default 5)")
    p.add_argument(
        "--known-threshold",
        type=float,
        default=8.0,
        help="mean judge score (1-10) from which a leaf is already known (default 8)",
    )
    p.add_argument(
        "--known-model",
        default="",
        help="ask this model (e.g. the production model's endpoint, …/v1) instead of the registry's production "
        "model loaded in-process (default: the registry's, else --base-model)",
    )
    p.add_argument("--known-model-name", default="", help="the model name at --known-model")
    p.add_argument("--max-new-tokens", type=int, default=256, help="answer length of the model asked (default: %(default)s)")
    p.add_argument("--skip-known", dest="known", action="store_false", help="do not ask the model")
    p.add_argument(
        "--warn-yield",
        type=float,
        default=0.25,
        help="warn when critique keeps less than this share of the sample (default 0.25)",
    )
    p.add_argument("--fail-on-warn", action="store_true", help="exit 1 on warn too")
    p.add_argument("--production-model-name", default="labpipe-model", help="registered model whose @production is asked and diffed against (default: %(default)s)")
    p.add_argument(
        "--tracking-uri", default="", help="MLflow (the production model; default MLFLOW_TRACKING_URI)"
    )
    p.add_argument("--workdir", default="", help="keep the sample's generation, critique and answers here")
    p.add_argument(
        "--compile",
        metavar="YAML",
        help="only write the review pipeline (KFP IR, to upload or submit on a cluster) to this file",
    )
    p.set_defaults(func=review_cmd)


def review_cmd(args: argparse.Namespace) -> int:
    import os

    from labpipe.errors import UserError

    if args.compile:
        from labpipe.pipelines.review_pipeline import compile_review_pipeline

        print(f"compiled {compile_review_pipeline(args.compile)}")
        return 0
    if not args.taxonomy:
        raise UserError("labpipe review: --taxonomy is required", fix="pass --taxonomy URL|PATH --ref BRANCH")
    from labpipe.commands.generation import client_options_from, judge_of
    from labpipe.review.stage import REVIEW_HTML, REVIEW_JSON, REVIEW_MD, ReviewConfig, run_review
    from labpipe.storage import join

    judge, judge_model = judge_of(args.judge, args.judge_model, args.teacher, args.teacher_model)
    config = ReviewConfig(
        taxonomy=args.taxonomy,
        out=args.out,
        ref=args.ref,
        base=args.base,
        leaves=args.leaf,
        base_model=args.base_model,
        teacher=client_options_from(args, args.teacher, args.teacher_model),
        judge=client_options_from(args, judge, judge_model),
        sample_size=args.sample_size,
        critique_profile=args.critique_profile,
        generation_gate=args.generation_gate,
        chunk_tokens=args.chunk_tokens,
        seed=args.seed,
        generation_cache=args.generation_cache,
        questions=args.questions or os.environ.get("LABPIPE_MT_BENCH_DATA", ""),
        known=args.known,
        known_questions=args.known_questions,
        known_model=args.known_model,
        known_model_name=args.known_model_name,
        known_threshold=args.known_threshold,
        max_new_tokens=args.max_new_tokens,
        warn_yield=args.warn_yield,
        fail_on_warn=args.fail_on_warn,
        production_model_name=args.production_model_name,
        tracking_uri=args.tracking_uri,
        workdir=args.workdir,
    )
    summary = run_review(config)
    print(
        (open(join(args.out, REVIEW_MD), encoding="utf-8").read() if "://" not in args.out else "").rstrip()
    )
    print(
        f"\nreview: {join(args.out, REVIEW_HTML)}  {join(args.out, REVIEW_MD)}  {join(args.out, REVIEW_JSON)}"
    )
    return int(summary["exit_code"])

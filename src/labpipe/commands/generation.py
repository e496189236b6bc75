"""`labpipe generate` (synthetic data from seed records) and `labpipe critique` (filter and mix).

TARGET is an OpenAI-compatible base URL ending in /v1 (API key from OPENAI_API_KEY, or the variable
named by --api-key-env) or a local model directory / s3:// URI run in-process. Without --teacher /
--judge, TEACHER_ENDPOINT / JUDGE_ENDPOINT (and *_MODEL, *_API_KEY) are used. Rerunning with the
same --out resumes: only requests without a checkpointed reply are sent.
"""

from __future__ import annotations

import argparse
import json
import logging


def register(sub) -> None:
    gen = sub.add_parser(
        "generate", help="generate synthetic training examples from seed records (resumable)"
    )
    gen.add_argument(
        "--seeds", required=True, help="seed records JSONL (from `labpipe seeds`), path or s3://"
    )
    gen.add_argument("--out", required=True, help="output directory; rerunning with the same one resumes")
    gen.add_argument(
        "--teacher",
        default="",
        help="URL ending in /v1, or a local model dir / s3:// (default: $TEACHER_ENDPOINT)",
    )
    gen.add_argument(
        "--teacher-model", default="", help="model name sent to the endpoint (default: $TEACHER_MODEL)"
    )
    gen.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    gen.add_argument(
        "--api-key-env",
        default="",
        help="variable holding the API key (default: TEACHER_API_KEY or OPENAI_API_KEY)",
    )
    gen.add_argument(
        "--flows", default=None, help="directory of flow YAML files (default: the shipped flows)"
    )
    gen.add_argument(
        "--fan-out-scale",
        type=float,
        default=1.0,
        help="multiply the fan-out of the steps that create items (e.g. 0.2 for a quick run; judge steps stay)",
    )
    gen.add_argument(
        "--no-stream", action="store_true", help="one step at a time for all leaves (same output, slower)"
    )
    gen.add_argument("--shard-plan", default="", help="shard plan JSON from seed extraction (fan-out)")
    gen.add_argument("--shard", type=int, default=0, help="which shard of --shard-plan to generate")
    client_options(gen)
    gen.add_argument(
        "--no-generation-gate", "--no-gate", dest="no_gate", action="store_true", help="record in-flow judge scores but drop nothing (smoke runs)"
    )
    gen.add_argument("--seed", type=int, default=0, help="sampling seed of the teacher requests")
    gen.add_argument(
        "--generation-cache",
        "--cache",
        dest="cache",
        default="",
        help="shared reply cache: a directory or s3:// prefix, or off (or none) for no cache (default: under $LABPIPE_CACHE)",
    )
    gen.add_argument("--quiet", action="store_true", help="no progress bars")
    _dialect_options(gen, "teacher")
    gen.set_defaults(func=generate)

    crit = sub.add_parser("critique", help="judge, filter and mix generated examples into training sets")
    crit.add_argument(
        "--in",
        dest="generated",
        required=True,
        nargs="+",
        help="output directory of `labpipe generate` (several: the shards of one generation, merged)",
    )
    crit.add_argument("--out", required=True, help="output directory; rerunning with the same one resumes")
    crit.add_argument(
        "--judge",
        default="",
        help="URL ending in /v1, or a local model dir / s3:// (default: $JUDGE_ENDPOINT)",
    )
    crit.add_argument(
        "--judge-model", default="", help="model name sent to the endpoint (default: $JUDGE_MODEL)"
    )
    crit.add_argument("--concurrency", type=int, default=32, help="judge requests in flight")
    crit.add_argument(
        "--api-key-env",
        default="",
        help="variable holding the API key (default: JUDGE_API_KEY or OPENAI_API_KEY)",
    )
    crit.add_argument(
        "--critique-profile", "--profile", dest="profile", default="lab", help="lab (LAB's thresholds), smoke (keep all scored), or a profile YAML"
    )
    crit.add_argument(
        "--samples-per-skill-leaf", type=int, default=30, help="skills examples per leaf (LAB: 30)"
    )
    crit.add_argument("--seed", type=int, default=0, help="data mixing seed")
    crit.add_argument(
        "--flows", default=None, help="directory of flow YAML files (default: the shipped flows)"
    )
    client_options(crit)
    crit.add_argument(
        "--generation-cache",
        "--cache",
        dest="cache",
        default="",
        help="shared reply cache: a directory or s3:// prefix, or off (or none) for no cache (default: under $LABPIPE_CACHE)",
    )
    _dialect_options(crit, "judge")
    crit.set_defaults(func=critique)


def client_options(parser: argparse.ArgumentParser) -> None:
    """Timeouts, retry counts and re-ask limits of the model client (generate, critique, evaluate)."""
    parser.add_argument("--request-timeout-s", "--timeout", dest="timeout", type=float, default=120.0, help="seconds per HTTP attempt (default 120)")
    parser.add_argument(
        "--max-retries",
        type=int,
        default=6,
        help="retries of 429/5xx/timeouts/dropped connections (default 6)",
    )
    parser.add_argument(
        "--schema-retries",
        type=int,
        default=2,
        help="re-asks for a reply that is not JSON or breaks the schema",
    )


def judge_of(judge: str, judge_model: str, teacher: str, teacher_model: str) -> tuple[str, str]:
    """The one rule for the judge of `labpipe run` and `labpipe review`: the judge given (a flag, a parameter,
    or JUDGE_ENDPOINT / JUDGE_MODEL), else the teacher, with the teacher's model."""
    import os

    given = judge or os.environ.get("JUDGE_ENDPOINT", "")
    if given:
        return given, judge_model or os.environ.get("JUDGE_MODEL", "")
    return teacher, judge_model or teacher_model


CLI_DESTS = {"timeout_s": "timeout"}  # ClientOptions fields whose option has a `dest` of another name


def client_options_from(args: argparse.Namespace, endpoint: str, model: str):
    """The ClientOptions of a command's model (generate, critique, review, evaluate): every option the
    command defines (its `dest` is the field's name, or CLI_DESTS's), the rest at their defaults."""
    from dataclasses import fields

    from labpipe.llm.options import ClientOptions

    given = vars(args)
    dests = {f.name: CLI_DESTS.get(f.name, f.name) for f in fields(ClientOptions)}
    named = {name: given[dest] for name, dest in dests.items() if dest in given}
    return ClientOptions(**{**named, "endpoint": endpoint, "model": model})


def _dialect_options(p: argparse.ArgumentParser, role: str) -> None:
    """How the endpoint's dialect is handled (see labpipe.llm.dialects), and when to fail."""
    p.add_argument(
        "--response-format",
        default="auto",
        choices=["auto", "json_schema", "json_object", "prompt"],
        help="structured replies: auto = probe the server once; json_schema / json_object = response_format; "
        "prompt = the schema in the prompt (replies are validated either way)",
    )
    p.add_argument(
        "--context-length",
        type=int,
        default=0,
        help=f"the {role}'s context window in tokens (default: what GET /v1/models reports); caps max_tokens",
    )
    from labpipe.llm.failures import DEFAULT_MAX_FAILED_SHARE

    p.add_argument(
        "--revision",
        default="",
        help=f"what the {role}'s weights are (a commit, a digest): part of the reply cache's key, for servers "
        "whose GET /v1/models does not describe the model (vLLM's and llama.cpp's do)",
    )

    p.add_argument(
        "--max-failed-share",
        type=float,
        default=DEFAULT_MAX_FAILED_SHARE,
        help=f"fail when more than this share of {role} requests failed after all retries (default "
        f"{DEFAULT_MAX_FAILED_SHARE:g}; fewer are reported and tolerated; 0: fail on any)",
    )


def _quiet_http_logs(args: argparse.Namespace) -> None:
    if not getattr(args, "verbose", False):  # one INFO line per request would bury the progress bars
        logging.getLogger("httpx").setLevel(logging.WARNING)


def generate(args: argparse.Namespace) -> int:
    _quiet_http_logs(args)
    from labpipe.generation.stage import GenerationConfig, run_generation
    from labpipe.storage import writing_folder

    with writing_folder(args.out):  # a second process on the same --out is refused, not paid twice
        meta = run_generation(
            GenerationConfig(
                seeds=args.seeds,
                out=args.out,
                teacher=client_options_from(args, args.teacher, args.teacher_model),
                flows_dir=args.flows,
                fan_out_scale=args.fan_out_scale,
                gate=not args.no_gate,
                seed=args.seed,
                stream=not args.no_stream,
                shard_plan=args.shard_plan,
                shard=args.shard,
                progress=not args.quiet,
                generation_cache=args.cache,
                max_failed_share=args.max_failed_share,
            )
        )
    print(json.dumps(meta))
    return 0


def critique(args: argparse.Namespace) -> int:
    _quiet_http_logs(args)
    from labpipe.critique.stage import CritiqueConfig, run_critique
    from labpipe.storage import writing_folder

    with writing_folder(args.out):  # a second process on the same --out is refused, not paid twice
        meta = run_critique(
            CritiqueConfig(
                generated=args.generated[0] if len(args.generated) == 1 else args.generated,
                out=args.out,
                judge=client_options_from(args, args.judge, args.judge_model),
                profile=args.profile,
                samples_per_skill_leaf=args.samples_per_skill_leaf,
                seed=args.seed,
                flows_dir=args.flows,
                generation_cache=args.cache,
                max_failed_share=args.max_failed_share,
            )
        )
    print(json.dumps(meta))
    return 0

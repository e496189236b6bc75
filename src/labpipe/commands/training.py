"""`labpipe train --phase knowledge|skills --model PATH|s3://... --data FILE --out DIR [--config PHASE.yaml]`.

Rerunning with the same --out resumes from the last complete checkpoint. Runs alone or under
`accelerate launch --config_file <labpipe>/training/accelerate/<cpu|single_gpu|fsdp>.yaml -m labpipe.cli train ...`.
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    train = sub.add_parser("train", help="one SFT phase (knowledge or skills) on trl; reruns resume")
    train.add_argument("--phase", required=True, choices=["knowledge", "skills"], help="which LAB phase to train")
    train.add_argument(
        "--model",
        required=True,
        help="base model: local HF directory or s3:// prefix (skills: the knowledge phase's <out>/model)",
    )
    train.add_argument("--data", required=True, help="messages JSONL (local path or s3://)")
    train.add_argument(
        "--out", required=True, help="output directory: checkpoints/, model/, training_summary.json"
    )
    train.add_argument(
        "--training-preset", "--preset", dest="preset", default="smoke", choices=["lab", "smoke"],
        help="phase preset (default: smoke, for a quick run by hand; the pipeline's training_preset defaults to lab)"
    )
    train.add_argument("--config", help="phase YAML replacing the preset")
    train.add_argument(
        "--replay",
        help="skills only: knowledge JSONL mixed in at the phase's replay_fraction "
        "(not with data that already holds knowledge_replay rows)",
    )
    train.add_argument("--chat-template", help="Jinja chat template (default: the model's)")
    train.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    train.add_argument("--run-id", default="", help="pipeline run id (MLflow parent run)")
    train.add_argument(
        "--tracking-uri", default="", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)"
    )
    train.add_argument(
        "--checkpoint-dir",
        default="",
        help="durable checkpoint location (directory or s3:// prefix); default: <out>/checkpoints",
    )
    train.add_argument(
        "--nproc-per-node",
        type=int,
        default=0,
        help="processes on this node, one per GPU (default: PET_NPROC_PER_NODE or 1); "
        "nodes come from PET_NNODES / PET_NODE_RANK / PET_MASTER_ADDR / PET_MASTER_PORT",
    )
    train.add_argument("--overrides", default="", help="phase settings as a JSON object, e.g. '{\"max_steps\": 4}'")
    train.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> int:
    from labpipe.errors import Problem, UserError
    from labpipe.training.config import TrainingConfig
    from labpipe.training.stage import run_training

    try:
        overrides = json.loads(args.overrides) if args.overrides else {}
    except json.JSONDecodeError as exc:
        raise UserError(
            Problem("labpipe train", "overrides", f"not JSON: {exc}", 'write a JSON object, e.g. \'{"epochs": 2}\'',
                    field="overrides")  # fmt: skip
        ) from None
    if not isinstance(overrides, dict):
        raise UserError(Problem("labpipe train", "overrides", "not a JSON object", "write {\"key\": value}",
                                field="overrides"))  # fmt: skip
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    summary = run_training(
        TrainingConfig(
            phase=args.phase,
            base_model=args.model,
            data=args.data,
            out=args.out,
            preset=args.preset,
            config_file=args.config,
            overrides=overrides,
            replay=args.replay,
            chat_template=args.chat_template,
            run_id=args.run_id,
            tracking_uri=args.tracking_uri,
            checkpoint_dir=args.checkpoint_dir,
            nproc_per_node=args.nproc_per_node,
        )
    )
    print(json.dumps(summary, indent=2))
    return 0

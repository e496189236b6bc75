"""`run_training(TrainingConfig) -> dict`: one SFT phase (knowledge or skills) from a base model to `<out>/model`.

Everything a user can get wrong (data rows, chat template, max length, batch arithmetic, model URI) is checked
before the model is loaded for training. Rerunning with the same `out` resumes from the last complete checkpoint
(optimizer, scheduler, RNG and data position restored by the trainer); a finished run returns its summary.
Works single-process and under `accelerate launch` (one process per device; FSDP via the accelerate config).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labpipe import storage
from labpipe.errors import Problem, UserError
from labpipe.models.loading import resolve_model_dir
from labpipe.training import checkpoints, data
from labpipe.training.config import PhaseConfig, TrainingConfig, preset_path


def run_training(config: TrainingConfig, *, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train one phase; returns the KFP Model artifact metadata (also written to training_summary.json).

    `out` may be an s3:// prefix: training then runs in a local work directory (kept for resume) and the
    finished directory is uploaded. `callbacks` are extra transformers TrainerCallbacks.
    """
    from labpipe.training import launch

    out = _work_dir(config.out)
    summary_path = out / checkpoints.SUMMARY
    if summary_path.exists():  # already complete: a rerun is a no-op
        summary = json.loads(summary_path.read_text())
        _publish(out, config.out)
        return summary
    plan = launch.launch_plan(config.nproc_per_node)
    if plan.world_size > 1 and not launch.in_worker():
        # Check the batch arithmetic before starting workers, then run `labpipe train` once per process.
        config.load_phase().gradient_accumulation(plan.world_size, where=config.config_file or config.preset)
        launch.run_workers(plan, train_argv(config))
        if summary_path.exists():
            return json.loads(summary_path.read_text())
        return {"phase": config.phase, "node_rank": plan.node_rank, "world_size": plan.world_size}
    phase = config.load_phase()
    prepared = _prepare(config, phase)
    summary = _train(config, phase, prepared, out, callbacks)
    _publish(out, config.out)
    return summary


def train_argv(config: TrainingConfig) -> list[str]:
    """`labpipe train` arguments that reproduce `config` in a worker process (launch.py)."""
    argv = ["--phase", config.phase, "--model", config.base_model, "--data", config.data, "--out", config.out,
            "--preset", config.preset, "--run-id", config.run_id, "--tracking-uri", config.tracking_uri]  # fmt: skip
    for flag, value in (
        ("--config", config.config_file),
        ("--replay", config.replay),
        ("--chat-template", config.chat_template),
        ("--checkpoint-dir", config.checkpoint_dir),
    ):
        if value:
            argv += [flag, value]
    if config.overrides:
        argv += ["--overrides", json.dumps(config.overrides)]
    return argv


def _work_dir(out: str) -> Path:
    if not storage.is_s3(out):
        return Path(out)
    return storage.cache_dir() / "training" / hashlib.sha256(out.encode()).hexdigest()[:16]


def _publish(work: Path, out: str) -> None:
    if storage.is_s3(out) and _is_main():
        storage.publish_dir(work, out)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _prepare(config: TrainingConfig, phase: PhaseConfig) -> dict[str, Any]:
    """Validate inputs and tokenize the data; raises UserError before any training starts."""
    from transformers import AutoConfig, AutoTokenizer

    where = config.config_file or str(preset_path(config.preset, config.phase))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    grad_accum = phase.gradient_accumulation(world_size, where=where)

    samples, digest = data.read_samples(config.data)
    digests = {config.data: digest}
    if config.replay:
        if config.phase != "skills":
            raise UserError(
                Problem(
                    "labpipe train",
                    "replay",
                    "--replay applies to the skills phase only",
                    "drop --replay for the knowledge phase",
                    field="replay",
                )
            )
        replay, replay_digest = data.read_samples(config.replay)
        digests[config.replay] = replay_digest
        samples = data.mix_replay(samples, replay, phase.replay_fraction, phase.seed)

    model_dir = resolve_model_dir(config.base_model)  # a path, s3://, or a previous phase's output
    model_config = AutoConfig.from_pretrained(model_dir)
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and phase.max_length > limit:
        raise UserError(
            Problem(
                where,
                "max-length",
                f"max_length {phase.max_length} exceeds the model's max_position_embeddings {limit}",
                f"set max_length to {limit} or less",
                field="max_length",
            )
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if config.chat_template:
        tokenizer.chat_template = storage.read_text(config.chat_template)
    data.check_chat_template(
        tokenizer, assistant_only=not phase.unmask_user, where=config.chat_template or config.base_model
    )
    stats = data.DataStats(digests=digests)
    rows = data.build_rows(
        tokenizer,
        samples,
        max_length=phase.max_length,
        overlong=phase.overlong,
        unmask_user=phase.unmask_user,
        stats=stats,
    )
    return {
        "model_dir": model_dir,
        "tokenizer": tokenizer,
        "rows": rows,
        "stats": stats,
        "grad_accum": grad_accum,
        "world_size": world_size,
    }


def sft_config(phase: PhaseConfig, *, output_dir: Path, grad_accum: int):
    """The trl SFTConfig of a phase. Data arrive tokenized with labels, so trl's own masking is off."""
    import torch
    from trl import SFTConfig

    bf16 = phase.bf16 == "true" or (
        phase.bf16 == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    )
    return SFTConfig(
        output_dir=str(output_dir),
        use_cpu=not torch.cuda.is_available(),  # on CPU: DDP over gloo when several processes are launched
        num_train_epochs=phase.epochs,
        max_steps=phase.max_steps,
        learning_rate=phase.learning_rate,
        lr_scheduler_type=phase.lr_scheduler,
        warmup_steps=phase.warmup_steps,
        weight_decay=phase.weight_decay,
        max_grad_norm=phase.max_grad_norm,
        per_device_train_batch_size=phase.per_device_batch_size,
        gradient_accumulation_steps=grad_accum,
        max_length=phase.max_length,
        packing=phase.packing,
        packing_strategy="bfd",
        padding_free=phase.packing,
        assistant_only_loss=False,
        completion_only_loss=False,
        activation_checkpointing=phase.gradient_checkpointing,
        bf16=bf16,
        save_strategy="steps",
        save_steps=phase.save_steps,
        save_total_limit=None,  # keep-last-K is applied to the published checkpoints (checkpoints.publish)
        logging_strategy="steps",
        logging_steps=phase.logging_steps,
        report_to="none",
        seed=phase.seed,
        data_seed=phase.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,
    )


def _train(
    config: TrainingConfig, phase: PhaseConfig, prepared: dict[str, Any], out: Path, callbacks: Sequence[Any]
) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from labpipe.runs.tracking import maybe_stage_run
    from labpipe.training.trainer import (
        LabSFTTrainer,
        MlflowStepMetrics,
        SaveEveryEpoch,
        use_per_sequence_attention,
    )

    stats: data.DataStats = prepared["stats"]
    # Checkpoints live in `ckpt` (the output itself, or a durable location mirrored locally when it is s3://).
    ckpt = checkpoints.mirror_dir(config.checkpoint_dir) if config.checkpoint_dir else out
    if _is_main():
        checkpoints.clear_staging(out)
        checkpoints.clear_staging(ckpt)
    args = sft_config(phase, output_dir=ckpt / checkpoints.STAGING, grad_accum=prepared["grad_accum"])
    with args.main_process_first(local=True, desc="fetch the durable checkpoint"):
        if config.checkpoint_dir and int(os.environ.get("LOCAL_RANK", "0")) == 0:
            checkpoints.pull_latest(config.checkpoint_dir)  # a retried pod or a fresh node resumes from it
    resume = checkpoints.latest_checkpoint(ckpt)
    model = AutoModelForCausalLM.from_pretrained(prepared["model_dir"], dtype=torch.float32)
    # Packed bins without flash-attention: attention per packed sequence, not over the whole bin (trainer.py).
    restore_attention = use_per_sequence_attention(model) if phase.packing else None
    stage = f"{config.phase}_sft"
    tracking = (
        maybe_stage_run(stage, pipeline_run_id=config.run_id, tracking_uri=config.tracking_uri)
        if _is_main()
        else _null_run()
    )
    with tracking as run:
        run.log_params(
            {
                "phase": config.phase,
                "base_model": config.base_model,
                "preset": config.preset,
                "config_file": config.config_file or "",
                "replay": config.replay or "",
                "world_size": prepared["world_size"],
                "gradient_accumulation": prepared["grad_accum"],
                **{f"phase.{k}": v for k, v in phase.__dict__.items()},
            }
        )
        trainer = LabSFTTrainer(
            model=model,
            args=args,
            train_dataset=data.to_dataset(prepared["rows"]),
            processing_class=prepared["tokenizer"],
            callbacks=[SaveEveryEpoch(), MlflowStepMetrics(run), *callbacks],
            lab_out=ckpt,
            keep_last=phase.keep_last,
            durable=config.checkpoint_dir,
        )
        if resume:
            trainer.load_token_counts(resume)
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        trainer._flush_counts()

        # The final model: every rank takes part in save_model (FSDP gathers), the main one publishes it.
        if restore_attention:  # the published model loads with the implementation it came with
            model.set_attn_implementation(restore_attention)
        staged = out / checkpoints.STAGING / "final-model"
        trainer.save_model(str(staged))
        trainer.accelerator.wait_for_everyone()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        totals = trainer.totals
        summary = {
            "phase": config.phase,
            "base_model": config.base_model,
            "preset": config.config_file or config.preset,
            "data_sha256": stats.digests,
            "steps": trainer.state.global_step,
            "epochs": phase.epochs,
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "samples": stats.samples,
            "replay_samples": stats.replay_samples,
            "dropped_overlong": stats.dropped_overlong,
            "truncated_overlong": stats.truncated_overlong,
            "tokens": totals["real"],
            "trained_tokens": totals["trained"],
            "padding_efficiency": totals["real"] / max(totals["processed"], 1),
            "train_seconds": result.metrics["train_runtime"],  # this session only (after a resume: the rest)
            "resumed_from_step": int(resume.name.split("-")[-1]) if resume else 0,
            "model_subpath": checkpoints.MODEL,
            "mlflow_run_id": run.run_id,
            "world_size": prepared["world_size"],
            "checkpoint_dir": config.checkpoint_dir,  # "" = <out>/checkpoints
            "checkpoints": [p.name for p in checkpoints.checkpoint_dirs(ckpt)],
        }
        if _is_main():
            final = out / checkpoints.MODEL
            if final.exists():
                shutil.rmtree(final)
            os.replace(staged, final)
            with storage.atomic_path(out / checkpoints.SUMMARY) as tmp:
                tmp.write_text(json.dumps(summary, indent=2))
            totals = (
                "steps",
                "tokens",
                "trained_tokens",
                "padding_efficiency",
                "samples",
                "dropped_overlong",
            )
            # "total_" keeps the run totals apart from the per-step series of the same name
            run.log_metrics(
                {"final_loss": summary["final_loss"], **{f"total_{k}": summary[k] for k in totals}}
            )
            checkpoints.clear_staging(out)
        trainer.accelerator.wait_for_everyone()
    return summary


def _null_run():
    from contextlib import nullcontext

    from labpipe.runs.tracking import NullStageRun

    return nullcontext(NullStageRun())

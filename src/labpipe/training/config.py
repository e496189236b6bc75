"""Typed training configs. A phase is data: one YAML file per phase, validated into a `PhaseConfig`.

Presets live in phases/<preset>/<phase>.yaml (`lab`: the published LAB values; `smoke`: the tiny model on a
CPU in seconds). `--config FILE` replaces the preset with a file of the same shape.

Batch arithmetic: `effective_batch_size = per_device_batch_size * gradient_accumulation * world_size`, counted in
training rows. With packing on, a row is one packed bin of up to `max_length` tokens holding several samples
(InstructLab counts samples; a packed row is the unit the optimizer sees here).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError

PHASES = ("knowledge", "skills")
PRESETS = ("lab", "smoke")
SCHEDULERS = ("constant_with_warmup", "linear", "cosine", "constant")
OVERLONG = ("drop", "truncate")


@dataclass(frozen=True)
class PhaseConfig:
    """Hyper-parameters of one SFT phase (the YAML keys are these field names)."""

    phase: str
    epochs: float = 1.0
    learning_rate: float = 2e-5
    lr_scheduler: str = (
        "constant_with_warmup"  # no decay to zero: the next phase starts from an undecayed model
    )
    warmup_steps: int = 0  # linear warmup
    effective_batch_size: int = 8
    per_device_batch_size: int = 1
    max_length: int = 2048
    overlong: str = "drop"  # samples longer than max_length: "drop" or "truncate" (keep the start)
    unmask_user: bool = False  # train on user turns too (continued pre-training style); system stays masked
    packing: bool = True  # trl bfd packing, padding-free batches
    replay_fraction: float = 0.0  # skills only, with an explicit --replay file: replay rows per skills row
    seed: int = 42
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    bf16: str = "auto"  # "auto" (on when the GPU supports it), "true", "false"
    max_steps: int = -1  # > 0 overrides epochs
    save_steps: int = 100  # also saved at the end of every epoch
    keep_last: int = 3
    logging_steps: int = 1

    def gradient_accumulation(self, world_size: int, where: str = "config") -> int:
        """Steps of accumulation that make the effective batch from the per-device batch and the world size."""
        per_step = self.per_device_batch_size * world_size
        if self.effective_batch_size % per_step:
            raise UserError(
                Problem(
                    where=where,
                    rule="effective-batch",
                    field="effective_batch_size",
                    message=f"{self.effective_batch_size} is not a multiple of per_device_batch_size "
                    f"{self.per_device_batch_size} x world size {world_size} = {per_step}",
                    fix="choose an effective_batch_size divisible by per_device_batch_size x number of processes",
                )
            )
        return self.effective_batch_size // per_step


@dataclass
class TrainingConfig:
    """One run of `run_training`: what to train, on what, where to write, and under which phase config."""

    phase: str  # "knowledge" | "skills"
    base_model: str  # local model directory or s3:// prefix (for skills: the knowledge phase's model)
    data: str  # messages JSONL (local path or s3://)
    out: str  # output directory: checkpoints/, model/, training_summary.json
    preset: str = "smoke"
    config_file: str | None = None  # a phase YAML replacing the preset
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"max_steps": 10}
    replay: str | None = None  # knowledge JSONL mixed into the skills phase at replay_fraction
    chat_template: str | None = None  # Jinja file; default: the base model's tokenizer template
    run_id: str = ""  # pipeline run id (MLflow parent)
    tracking_uri: str = ""
    # Durable checkpoints (local dir or s3:// prefix, see checkpoints.default_location); "" = <out>/checkpoints.
    # When set, <out> holds only model/ and training_summary.json (the slim Model artifact).
    checkpoint_dir: str = ""
    nproc_per_node: int = 0  # processes on this node (one per GPU); 0 = PET_NPROC_PER_NODE or 1 (launch.py)

    def load_phase(self) -> PhaseConfig:
        if self.phase not in PHASES:
            raise UserError(
                Problem(
                    where="labpipe train",
                    rule="phase",
                    field="phase",
                    message=f"unknown phase {self.phase!r}",
                    fix=f"use one of {', '.join(PHASES)}",
                )
            )
        cfg = load_phase_file(self.config_file) if self.config_file else load_preset(self.preset, self.phase)
        if cfg.phase != self.phase:
            raise UserError(
                Problem(
                    where=self.config_file or self.preset,
                    rule="phase-mismatch",
                    field="phase",
                    message=f"the config is for phase {cfg.phase!r}, the run is for {self.phase!r}",
                    fix="pass the config file of the phase you train",
                )
            )
        if self.overrides:
            cfg = _from_mapping({**dataclasses.asdict(cfg), **self.overrides}, "overrides", {})
        return cfg


def preset_path(preset: str, phase: str) -> Path:
    if preset not in PRESETS:
        raise UserError(
            Problem(
                where="labpipe train",
                rule="preset",
                field="preset",
                message=f"unknown preset {preset!r}",
                fix=f"use one of {', '.join(PRESETS)} or --config FILE",
            )
        )
    return Path(str(resources.files("labpipe.training") / "phases" / preset / f"{phase}.yaml"))


def load_preset(preset: str, phase: str) -> PhaseConfig:
    return load_phase_file(preset_path(preset, phase))


def load_phase_file(path: str | os.PathLike) -> PhaseConfig:
    """Parse and validate a phase YAML; problems name file:line and the field."""
    import yaml

    from labpipe import storage

    text = storage.read_text(str(path))
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(
            Problem(where=where, rule="yaml", message=str(exc).splitlines()[0], fix="fix the YAML syntax")
        ) from None
    if node is None or not isinstance(node, yaml.MappingNode):
        raise UserError(
            Problem(
                where=f"{path}:1:1",
                rule="phase-config",
                message="expected a mapping of settings",
                fix="see src/labpipe/training/phases/smoke/knowledge.yaml for the shape",
            )
        )
    lines = {k.value: f"{path}:{k.start_mark.line + 1}:{k.start_mark.column + 1}" for k, _ in node.value}
    return _from_mapping(yaml.safe_load(text), str(path), lines)


def _from_mapping(data: dict[str, Any], source: str, lines: dict[str, str]) -> PhaseConfig:
    fields = {f.name: f for f in dataclasses.fields(PhaseConfig)}
    problems = []

    def problem(key: str, rule: str, message: str, fix: str) -> None:
        problems.append(Problem(where=lines.get(key, source), rule=rule, field=key, message=message, fix=fix))

    for key in data:
        if key not in fields:
            problem(key, "unknown-key", f"unknown setting {key!r}", f"use one of {', '.join(fields)}")
    if "phase" not in data:
        problem("phase", "required", "missing setting 'phase'", f"add phase: one of {', '.join(PHASES)}")
    values = {}
    for key, value in data.items():
        if key not in fields:
            continue
        want = {"int": int, "float": float, "bool": bool, "str": str}[str(fields[key].type)]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if want is str and key == "bf16" and isinstance(value, bool):
            value = str(value).lower()
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            problem(key, "type", f"expected {want.__name__}, got {value!r}", f"write a {want.__name__}")
            continue
        values[key] = value
    checks = [
        ("phase", lambda v: v in PHASES, f"one of {', '.join(PHASES)}"),
        ("lr_scheduler", lambda v: v in SCHEDULERS, f"one of {', '.join(SCHEDULERS)}"),
        ("overlong", lambda v: v in OVERLONG, f"one of {', '.join(OVERLONG)}"),
        ("bf16", lambda v: v in ("auto", "true", "false"), "auto, true or false"),
        ("epochs", lambda v: v > 0, "greater than 0"),
        ("learning_rate", lambda v: v > 0, "greater than 0"),
        ("warmup_steps", lambda v: v >= 0, "0 or more"),
        ("effective_batch_size", lambda v: v >= 1, "1 or more"),
        ("per_device_batch_size", lambda v: v >= 1, "1 or more"),
        ("max_length", lambda v: v >= 8, "8 or more"),
        ("replay_fraction", lambda v: 0 <= v <= 10, "between 0 and 10"),
        ("save_steps", lambda v: v >= 1, "1 or more"),
        ("keep_last", lambda v: v >= 1, "1 or more"),
        ("logging_steps", lambda v: v >= 1, "1 or more"),
    ]
    for key, ok, wanted in checks:
        if key in values and not ok(values[key]):
            problem(key, "value", f"{values[key]!r} is not allowed", f"use {wanted}")
    if problems:
        raise UserError(problems)
    return PhaseConfig(**values)

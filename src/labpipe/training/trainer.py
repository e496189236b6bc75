"""trl's SFTTrainer with atomic keep-last-K checkpoints and token accounting, plus the MLflow callback.

transformers' own MLflow integration is driven by environment variables and opens runs of its own; we set
report_to="none" and log through labpipe.runs.tracking so per-step metrics land in the stage's nested run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from labpipe.training import checkpoints

TOKEN_COUNTS = "token_counts.json"
METRICS = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "padding_efficiency", "mean_token_accuracy")


class LabSFTTrainer(SFTTrainer):
    """Writes checkpoints to a staging folder and publishes each one with a single rename once complete.

    Counts, per micro-batch, the tokens processed (batch tensor size), the real ones (not padding) and the
    trained ones (with a loss label); totals survive resumes through token_counts.json in each checkpoint.
    """

    def __init__(self, *args, lab_out: str | Path, keep_last: int, durable: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.lab_out = Path(lab_out)
        self.keep_last = keep_last
        self.durable = durable  # an s3:// checkpoint location: each published checkpoint is uploaded there
        self.totals = {"processed": 0, "real": 0, "trained": 0}
        self._pending = torch.zeros(3, dtype=torch.float64)  # local counts not yet reduced across processes
        self._last_log = (time.perf_counter(), 0)  # (time, real tokens) at the previous log

    def load_token_counts(self, checkpoint: Path) -> None:
        path = checkpoint / TOKEN_COUNTS
        if path.exists():
            self.totals = json.loads(path.read_text())
        self._last_log = (time.perf_counter(), self.totals["real"])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = without_varlen_kwargs(inputs, self.model.config._attn_implementation)
        ids = inputs["input_ids"]
        real = inputs["attention_mask"].sum() if "attention_mask" in inputs else ids.numel()
        trained = (inputs["labels"] != -100).sum()
        self._pending += torch.tensor([ids.numel(), float(real), float(trained)], dtype=torch.float64)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _flush_counts(self) -> None:
        pending = self._pending.to(self.accelerator.device)
        if self.accelerator.num_processes > 1:
            pending = self.accelerator.reduce(pending, reduction="sum")
        for key, value in zip(("processed", "real", "trained"), pending.tolist(), strict=True):
            self.totals[key] += int(value)
        self._pending.zero_()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training-step log (not the end-of-training summary)
            before = dict(self.totals)
            self._flush_counts()
            now = time.perf_counter()
            last_time, last_real = self._last_log
            processed = self.totals["processed"] - before["processed"]
            logs["tokens_per_s"] = (self.totals["real"] - last_real) / max(now - last_time, 1e-9)
            logs["padding_efficiency"] = (self.totals["real"] - before["real"]) / max(processed, 1)
            self._last_log = (now, self.totals["real"])
        super().log(logs, start_time)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        self._flush_counts()
        staged = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            (staged / TOKEN_COUNTS).write_text(json.dumps(self.totals))
        self.accelerator.wait_for_everyone()  # every rank has written its shards
        if self.args.should_save:  # rank 0 alone
            published = checkpoints.publish(staged, self.lab_out, self.keep_last)
            if self.durable:
                checkpoints.push(published, self.durable, self.keep_last)
        self.accelerator.wait_for_everyone()


VARLEN_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")
PER_SEQUENCE_SDPA = "labpipe_per_sequence_sdpa"


def without_varlen_kwargs(inputs: dict[str, Any], attn_implementation: str | None) -> dict[str, Any]:
    """Drop the flash-attention varlen boundaries from a padding-free batch unless a kernel uses them.

    Flash-attention and labpipe's per-sequence sdpa (`per_sequence_sdpa`) use them; plain sdpa / eager find the
    packed sequences from position_ids (a block-causal mask; tested equal to separate forwards), and ran 3-5x
    slower on CPU when handed the varlen kwargs as well.
    """
    impl = attn_implementation or ""
    if "flash" in impl or impl == PER_SEQUENCE_SDPA or not any(k in inputs for k in VARLEN_KWARGS):
        return inputs
    return {k: v for k, v in inputs.items() if k not in VARLEN_KWARGS}


def per_sequence_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal sdpa over each packed sequence of a padding-free row separately (varlen without flash-attention).

    sdpa / eager over a packed row compute the full T x T scores of the bin and mask the cross-sequence ones, so
    the attention cost per token grows with the bin length. Here each sequence (bounds from the collator's
    `cu_seq_lens_q`) gets its own causal sdpa call with no mask: sum(len_i^2) work, no cross-sequence
    attention and no mask to build. Only for padding-free packed batches (batch size 1, no padding).
    """
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or attention_mask is not None:
        raise ValueError(
            f"{PER_SEQUENCE_SDPA} needs padding-free packed batches (one row with cu_seq_lens_q)"
        )
    from transformers.integrations.sdpa_attention import repeat_kv

    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    cuts = bounds.tolist()
    dropout = dropout if module.training else 0.0
    outs = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            is_causal=True,
            scale=scaling,
        )
        for start, end in zip(cuts[:-1], cuts[1:], strict=True)
        if end > start
    ]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def use_per_sequence_attention(model: torch.nn.Module) -> str | None:
    """Switch a model that is not on flash-attention to `per_sequence_sdpa`; returns the implementation to restore.

    With flash-attention (varlen kernels, GPUs) nothing changes and None is returned.
    """
    from transformers import AttentionInterface

    current = model.config._attn_implementation or "eager"
    if "flash" in current or current == PER_SEQUENCE_SDPA:
        return None
    AttentionInterface.register(PER_SEQUENCE_SDPA, per_sequence_sdpa)
    model.set_attn_implementation(PER_SEQUENCE_SDPA)
    return current


class SaveEveryEpoch(TrainerCallback):
    """Checkpoint at each epoch end, on top of every `save_steps` steps."""

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_save = True
        return control


class MlflowStepMetrics(TrainerCallback):
    """Logs each training log (loss, lr, grad norm, tokens/s, padding efficiency) to the stage's MLflow run."""

    def __init__(self, run: Any):
        self.run = run

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            from labpipe.runs.progress import emit

            emit("training", step=state.global_step, max_steps=state.max_steps, loss=logs["loss"])
            self.run.log_metrics(
                {k: logs[k] for k in METRICS if isinstance(logs.get(k), int | float)}, step=state.global_step
            )

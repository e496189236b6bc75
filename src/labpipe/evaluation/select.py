"""Checkpoint selection: score the skill phase's checkpoints on MT-Bench and keep the best (or the last).

Reads the training layout (labpipe.training.checkpoints): <model_dir>/model/, and the checkpoints
checkpoint-<step>/ under <model_dir>/checkpoints/ or, for a slim Model artifact, under the durable location its
training_summary.json records (`checkpoint_dir`: a directory or s3:// prefix; only the checkpoints the summary
lists are fetched). Each scored checkpoint gets its own evaluation directory under `out`; selection.json names
the winner (`selected`: its URI; `selected_local`: the local copy that was scored). Ties go to the later step;
invalid evaluations are never selected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from labpipe import storage
from labpipe.errors import Problem, UserError
from labpipe.evaluation.stage import EvalConfig, run_mt_bench
from labpipe.llm.options import ClientOptions

STRATEGIES = ("best", "last")


@dataclass
class SelectConfig:
    model_dir: str  # a training output directory (local or s3://)
    out: str  # selection.json + one evaluation directory per scored checkpoint
    eval: EvalConfig = field(
        default_factory=lambda: EvalConfig(model="", judge=ClientOptions(), out="")
    )  # judge, questions...
    strategy: str = "best"
    steps: list[int] = field(default_factory=list)  # score only these steps; empty = all
    max_checkpoints: int = 0  # > 0: at most this many, evenly spaced, the last always included
    include_final: bool = True  # also score <model_dir>/model when present


def candidates(
    model_dir: Path,
    steps: list[int],
    max_checkpoints: int,
    include_final: bool,
    checkpoint_root: Path | None = None,
) -> list[tuple[str, Path]]:
    from labpipe.training.checkpoints import MODEL, checkpoint_dirs

    found = [(int(re.sub(r"\D", "", p.name)), p) for p in checkpoint_dirs(checkpoint_root or model_dir)]
    if steps:
        missing = sorted(set(steps) - {s for s, _ in found})
        if missing:
            raise UserError(
                Problem(
                    where=str(model_dir / "checkpoints"),
                    rule="checkpoint",
                    field="steps",
                    message=f"no checkpoint for steps {missing}",
                    fix=f"choose from {[s for s, _ in found]}",
                )
            )
        found = [(s, p) for s, p in found if s in steps]
    if max_checkpoints > 0 and len(found) > max_checkpoints:
        last = len(found) - 1
        keep = sorted({round(i * last / max(1, max_checkpoints - 1)) for i in range(max_checkpoints)})
        found = [found[i] for i in keep]
    out = [(f"checkpoint-{s}", p) for s, p in found]
    if include_final and (model_dir / MODEL).is_dir():
        out.append((MODEL, model_dir / MODEL))
    if not out:
        raise UserError(
            Problem(
                where=str(model_dir),
                rule="checkpoint",
                message="no checkpoints and no model/",
                fix="pass a training output directory (checkpoints/checkpoint-<step>/, model/)",
            )
        )
    return out


def select_checkpoint(cfg: SelectConfig) -> dict:
    """Score the checkpoints (strategy "best") or take the last one; writes <out>/selection.json."""
    if cfg.strategy not in STRATEGIES:
        raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, not {cfg.strategy!r}")
    root = storage.materialize_dir(cfg.model_dir)
    durable, ckpt_root = checkpoint_location(root)
    found = candidates(root, cfg.steps, cfg.max_checkpoints, cfg.include_final, ckpt_root)
    scores: dict[str, float | None] = {}
    costs: dict[str, dict[str, int]] = {}  # per scored checkpoint: engine starts, answers and verdicts sent
    if cfg.strategy == "last":
        name, path = found[-1]
    else:
        for label, path in found:
            meta = run_mt_bench(
                replace(
                    cfg.eval,
                    model=str(path),
                    base_model="",
                    model_name=label,
                    out=storage.join(cfg.out, label),
                )
            )
            scores[label] = None if meta["invalid"] else meta.get("candidate.overall")
            costs[label] = {k: int(meta.get(k, 0)) for k in ("engine_starts", "answers_sent", "judge_requests_sent")}
        valid = [(s, i) for i, (label, _) in enumerate(found) if (s := scores[label]) is not None]
        if not valid:
            raise UserError(
                Problem(
                    where=cfg.model_dir,
                    rule="checkpoint",
                    message="every checkpoint evaluation was invalid (too many failed judgments)",
                    fix="check the judge; see each evaluation's metrics.json",
                )
            )
        name, path = found[max(valid)[1]]
    if durable and path.is_relative_to(ckpt_root):  # a checkpoint in the durable location
        selected = storage.join(durable, path.relative_to(ckpt_root).as_posix())
    elif storage.is_s3(cfg.model_dir):
        selected = storage.join(cfg.model_dir, path.relative_to(root).as_posix())
    else:
        selected = str(path)
    selection = {
        "selected": selected,
        "selected_local": str(path),
        "name": name,
        "strategy": cfg.strategy,
        "scores": scores,
        "costs": costs,  # one engine per checkpoint, one after another on the same GPUs
        "source": cfg.model_dir,
    }
    storage.write_text(storage.join(cfg.out, "selection.json"), json.dumps(selection, indent=2) + "\n")
    return selection


def checkpoint_location(root: Path) -> tuple[str, Path | None]:
    """(durable URI, local directory holding checkpoints/) of a training output, or ("", None) when its
    checkpoints are inside it. Only the checkpoints the summary lists are fetched from an s3:// location."""
    from labpipe.training import checkpoints

    summary_path = root / checkpoints.SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    durable = summary.get("checkpoint_dir") or ""
    if not durable:
        return "", None
    if not storage.is_s3(durable) and not Path(durable).is_dir():
        raise UserError(
            Problem(
                where=str(root / checkpoints.SUMMARY),
                rule="checkpoint",
                field="checkpoint_root",
                message=f"the checkpoints were written to {durable}, which this pod cannot see (a pod-local "
                "default location)",
                fix="set the pipeline parameter checkpoint_root to an s3:// prefix (or compile with a KFP "
                "workspace) for checkpoint_selection=best on a cluster; 'last' needs no checkpoints",
            )
        )
    return durable, checkpoints.materialize_checkpoints(durable, summary.get("checkpoints"))

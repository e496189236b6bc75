"""Checkpoint directories: visible only when complete, keep-last-K, and the one to resume from.

Layout under a training run's output directory `out`:
    out/.trainer/checkpoint-<step>/   where the trainer writes (staging; cleared on start)
    out/checkpoints/checkpoint-<step>/  complete checkpoints only (moved in by one atomic rename)
    out/model/                          the final model, written when training completes
    out/training_summary.json           written last; its presence means the run is complete
Each checkpoint holds HF safetensors weights, tokenizer + chat template, optimizer, scheduler, RNG state,
trainer_state.json and token_counts.json (token accounting across resumes).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

CHECKPOINTS = "checkpoints"
STAGING = ".trainer"
MODEL = "model"
SUMMARY = "training_summary.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(out: str | Path) -> list[Path]:
    """Complete checkpoints, oldest step first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out: str | Path) -> Path | None:
    dirs = checkpoint_dirs(out)
    return dirs[-1] if dirs else None


def clear_staging(out: str | Path) -> None:
    """Remove what a killed run left half-written."""
    shutil.rmtree(Path(out) / STAGING, ignore_errors=True)


def publish(staged: str | Path, out: str | Path, keep_last: int) -> Path:
    """Move a finished checkpoint from staging into checkpoints/ (one rename), then drop all but the last K."""
    staged = Path(staged)
    root = Path(out) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    dest = root / staged.name
    if dest.exists():  # the same step saved twice (step and epoch boundary coincide): keep the newer
        shutil.rmtree(dest)
    os.replace(staged, dest)
    for old in checkpoint_dirs(out)[:-keep_last]:
        # Rename first so a reader never sees a half-deleted checkpoint under its real name.
        doomed = old.with_name(f".deleting-{old.name}")
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return dest


# --- Durable checkpoints: a location that outlives the pod (an s3:// prefix, a workspace volume, a local dir) ---
COMPLETE = ".labpipe-complete"  # on S3 (no atomic directories) a checkpoint counts only once this marker exists


def _step(name: str) -> int:
    return int(_NAME.match(name).group(1))


def mirror_dir(uri: str) -> Path:
    """The local directory that holds the checkpoints of `uri`: the path itself, or a cache mirror for s3://."""
    import hashlib

    from labpipe import storage

    if not storage.is_s3(uri):
        return Path(uri)
    return storage.cache_dir() / "checkpoints" / hashlib.sha256(uri.encode()).hexdigest()[:16]


def remote_checkpoints(uri: str) -> list[str]:
    """Names of the complete checkpoints under an s3:// location (`<uri>/checkpoints/checkpoint-<step>/`)."""
    from labpipe import storage

    bucket, key = storage.split_s3(storage.join(uri, CHECKPOINTS))
    prefix = key.rstrip("/") + "/"
    names = []
    for page in storage.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name, _, rest = obj["Key"][len(prefix) :].partition("/")
            if rest == COMPLETE and _NAME.match(name):
                names.append(name)
    return sorted(names, key=_step)


def pull_latest(uri: str) -> Path | None:
    """Bring the newest complete checkpoint of `uri` into its local mirror (when newer); returns the mirror's latest."""
    from labpipe import storage

    local = mirror_dir(uri)
    if storage.is_s3(uri):
        names = remote_checkpoints(uri)
        have = latest_checkpoint(local)
        if names and (have is None or _step(have.name) < _step(names[-1])):
            _fetch(uri, names[-1], local)
    return latest_checkpoint(local)


def push(checkpoint: Path, uri: str, keep_last: int) -> None:
    """Upload a complete local checkpoint to an s3:// location (marker last), then drop all but the last K there."""
    from labpipe import storage

    if not storage.is_s3(uri):
        return  # a local location is written in place by `publish`
    dest = storage.join(uri, CHECKPOINTS, checkpoint.name)
    storage.upload_dir(checkpoint, dest)
    storage.write_text(storage.join(dest, COMPLETE), checkpoint.name)
    for old in remote_checkpoints(uri)[:-keep_last]:
        delete_remote(storage.join(uri, CHECKPOINTS, old))


def delete_remote(prefix: str) -> None:
    """Delete an S3 checkpoint: its marker first, so no reader takes a half-deleted one for complete."""
    from labpipe import storage

    client = storage.s3_client()
    bucket, key = storage.split_s3(prefix)
    client.delete_object(Bucket=bucket, Key=f"{key}/{COMPLETE}")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/"):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])


def materialize_checkpoints(uri: str, names: list[str] | None = None) -> Path:
    """A local directory with `checkpoints/<name>/` for the complete checkpoints of `uri` (all, or `names`)."""
    from labpipe import storage

    local = mirror_dir(uri)
    if not storage.is_s3(uri):
        return local
    for name in names if names is not None else remote_checkpoints(uri):
        if not (local / CHECKPOINTS / name).is_dir():
            _fetch(uri, name, local)
    return local


def _fetch(uri: str, name: str, local: Path) -> None:
    """Download one S3 checkpoint into `local/checkpoints/<name>` (visible only when complete)."""
    from labpipe import storage

    staging = local / STAGING / f"pull-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    storage.download_dir(storage.join(uri, CHECKPOINTS, name), staging)
    (staging / COMPLETE).unlink(missing_ok=True)
    (local / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    os.replace(staging, local / CHECKPOINTS / name)


def default_location(checkpoint_root: str, run_id: str, phase: str, *, workspace: str = "") -> str:
    """The durable checkpoint location of one phase of one pipeline run.

    `checkpoint_root` (an s3:// prefix or a directory) wins: `<root>/<run_id>/<phase>`. Without it: the run's KFP
    workspace volume when one is mounted (`<workspace>/checkpoints/<phase>`, it outlives retried pods), else
    `$LABPIPE_CACHE/checkpoints/<run_id>/<phase>` (a pod: lost with the pod). The SFT task passes a key of the
    training's inputs as `run_id` in that last case, so that rerunning the same `labpipe run` resumes.
    """
    from labpipe import storage

    run = run_id or "local"
    if checkpoint_root:
        return storage.join(checkpoint_root, run, phase)
    if workspace and Path(workspace).is_dir():
        return str(Path(workspace) / "checkpoints" / phase)
    return str(storage.cache_dir() / "checkpoints" / run / phase)

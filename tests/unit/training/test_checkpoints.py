"""Checkpoint directories: only complete ones are visible, keep-last-K, the newest step is the resume point."""

from __future__ import annotations

from labpipe.training import checkpoints


def _staged(out, step):
    path = out / checkpoints.STAGING / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    return path


def test_publish_moves_whole_checkpoints_and_keeps_the_last_k(tmp_path):
    for step in (2, 4, 10, 6):
        checkpoints.publish(_staged(tmp_path, step), tmp_path, keep_last=2)
    names = [p.name for p in checkpoints.checkpoint_dirs(tmp_path)]
    assert names == ["checkpoint-6", "checkpoint-10"]  # numeric order, not lexical
    assert checkpoints.latest_checkpoint(tmp_path).name == "checkpoint-10"
    assert not any(p.name.startswith(".deleting") for p in (tmp_path / checkpoints.CHECKPOINTS).iterdir())


def test_half_written_staging_is_never_a_resume_point_and_is_cleared(tmp_path):
    checkpoints.publish(_staged(tmp_path, 2), tmp_path, keep_last=3)
    _staged(tmp_path, 4)  # a run killed while writing checkpoint-4
    assert checkpoints.latest_checkpoint(tmp_path).name == "checkpoint-2"
    checkpoints.clear_staging(tmp_path)
    assert not (tmp_path / checkpoints.STAGING).exists()


def test_no_checkpoints(tmp_path):
    assert checkpoints.latest_checkpoint(tmp_path) is None

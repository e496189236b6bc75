"""Outputs are readable by the next task's UID: atomic outputs get an ordinary file's permissions (the umask's),
not the owner-only 0600 of temporary files (found running the pipeline as arbitrary UIDs in containers)."""

from __future__ import annotations

import os
import stat

import pytest

from labpipe import storage


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_path_output_has_ordinary_permissions(tmp_path, umask):
    with storage.atomic_path(tmp_path / "out.jsonl") as tmp:
        tmp.write_text("{}\n")
    assert _mode(tmp_path / "out.jsonl") == 0o644


def test_atomic_dir_makes_owner_only_files_group_readable(tmp_path, umask):
    with storage.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "sub").mkdir(mode=0o700)
        for name in ("model.safetensors", "sub/shard.bin"):
            (tmp / name).write_bytes(b"x")
            (tmp / name).chmod(0o600)  # what mkstemp-style writers leave
    for rel, want in (("model.safetensors", 0o644), ("sub/shard.bin", 0o644), ("sub", 0o755), ("", 0o755)):
        assert _mode(tmp_path / "model" / rel) == want, rel


def test_a_private_umask_is_respected(tmp_path, umask):
    umask(0o077)
    with storage.atomic_path(tmp_path / "secret.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "secret.txt") == 0o600

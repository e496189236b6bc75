"""labpipe.storage against a real S3 endpoint (moto server on 127.0.0.1), and locally."""

from __future__ import annotations

import boto3
import pytest

from labpipe import storage
from labpipe.errors import UserError


@pytest.fixture
def bucket(s3_env) -> str:
    name = "labpipe-storage"
    client = boto3.client("s3")
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return name


def test_text_roundtrip_and_exists(bucket):
    uri = f"s3://{bucket}/a/b.txt"
    storage.write_text(uri, "héllo")
    assert storage.read_text(uri) == "héllo"
    assert storage.exists(uri)
    assert storage.exists(f"s3://{bucket}/a")  # a prefix counts
    assert not storage.exists(f"s3://{bucket}/missing.txt")


def test_dir_upload_download_multipart_verified(bucket, tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    big = bytes(range(256)) * (20 * 2**20 // 256)  # 20 MiB: above the 16 MiB multipart threshold
    (src / "model.safetensors").write_bytes(big)
    (src / "sub" / "config.json").write_text('{"a": 1}')
    assert storage.upload_dir(src, f"s3://{bucket}/models/m1") == 2

    local = storage.materialize_dir(f"s3://{bucket}/models/m1")
    assert (local / "model.safetensors").read_bytes() == big
    assert (local / "sub" / "config.json").read_text() == '{"a": 1}'
    assert storage.materialize_dir(f"s3://{bucket}/models/m1") == local  # cached


def test_download_detects_corruption(bucket, tmp_path):
    client = boto3.client("s3")
    client.put_object(Bucket=bucket, Key="bad/x.bin", Body=b"abc", Metadata={storage.SHA256_META: "0" * 64})
    with pytest.raises(UserError, match="sha256 mismatch"):
        storage.download_dir(f"s3://{bucket}/bad", tmp_path / "out")
    assert not (tmp_path / "out" / "x.bin").exists()


def test_missing_prefix_is_a_user_error(bucket):
    with pytest.raises(UserError, match="no objects under this prefix"):
        storage.materialize_dir(f"s3://{bucket}/nothing/here")


def test_local_atomic_write(tmp_path):
    target = tmp_path / "out" / "file.txt"
    with pytest.raises(RuntimeError):
        with storage.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []
    storage.write_text(str(target), "done")
    assert target.read_text() == "done"


def test_atomic_dir_replaces_only_on_success(tmp_path):
    dest = tmp_path / "model"
    with storage.atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with storage.atomic_dir(dest) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError
    assert (dest / "a").read_text() == "1"

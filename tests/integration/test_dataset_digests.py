"""Dataset digests as the lineage records them: files, directories, a KFP task's local view of an s3://
artifact, and an s3:// object uploaded by labpipe.storage (read from its metadata on a real moto S3)."""

from __future__ import annotations

import boto3
import pytest

from labpipe import storage
from labpipe.runs import datasets


def test_file_and_directory_digests(tmp_path):
    data = tmp_path / "set.jsonl"
    data.write_text('{"a": 1}\n')
    assert datasets.dataset_digest(data) == storage.sha256_file(data)
    folder = tmp_path / "generated"
    (folder / "sub").mkdir(parents=True)
    (folder / "generated.jsonl").write_text("x\n")
    (folder / "sub" / "manifest.json").write_text("{}")
    first = datasets.dataset_digest(folder)
    assert len(first) == 64 and datasets.dataset_digest(folder) == first
    (folder / "sub" / "manifest.json").write_text("{ }")
    assert datasets.dataset_digest(folder) != first  # any content change shows
    assert datasets.dataset_digest(tmp_path / "missing") == ""  # unknown, never invented


def test_a_kfp_task_digests_its_local_view_of_an_s3_artifact(tmp_path, monkeypatch):
    # The KFP launcher gives a task s3://bucket/key at /s3/bucket/key; a stand-in root for /s3/ here.
    monkeypatch.setitem(datasets.KFP_LOCAL_MOUNTS, "s3://", f"{tmp_path}/s3/")
    local = tmp_path / "s3" / "pipelines" / "run-1" / "seeds"
    local.parent.mkdir(parents=True)
    local.write_text("seed\n")
    assert datasets.local_view("s3://pipelines/run-1/seeds") == local
    ref = datasets.DatasetRef("seeds", "s3://pipelines/run-1/seeds", context="output")
    entity = ref.to_entity()
    assert entity.dataset.source_type == "s3" and '"s3://pipelines/run-1/seeds"' in entity.dataset.source
    assert entity.dataset.digest == storage.sha256_file(local)[:32]
    assert storage.sha256_file(local) in entity.dataset.profile
    assert [(t.key, t.value) for t in entity.tags] == [("mlflow.data.context", "output")]


@pytest.fixture
def bucket(s3_env) -> str:
    client = boto3.client("s3")
    try:
        client.create_bucket(Bucket="labpipe-digests")
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return "labpipe-digests"


def test_an_s3_object_digest_comes_from_its_upload_metadata(bucket, tmp_path):
    storage.write_text(f"s3://{bucket}/sets/skills.jsonl", "row\n")
    (tmp_path / "same.jsonl").write_text("row\n")
    assert datasets.dataset_digest(f"s3://{bucket}/sets/skills.jsonl") == storage.sha256_file(tmp_path / "same.jsonl")
    assert datasets.dataset_digest(f"s3://{bucket}/sets") == ""  # a prefix: unknown without downloading it

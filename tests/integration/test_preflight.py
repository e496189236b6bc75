"""Preflight against real services: a git repository served over file://, the fake OpenAI-compatible
server (with an API key), a moto S3 endpoint, a real `mlflow server`, the MT-Bench data from ../shared.
A correct configuration passes; a configuration wrong in every way fails with one report naming every
parameter or secret at fault (bounded: a dead endpoint costs a timeout, not a hang)."""

from __future__ import annotations

import json
import socket

import pytest

from labpipe import storage
from labpipe.cli import main
from labpipe.errors import UserError
from labpipe.preflight import PreflightConfig, check, run_preflight
from labpipe.taxonomy import gitrepo
from labpipe.taxonomy.sample import prepare_sample_taxonomy
from tests.support.fake_openai import FakeOpenAIServer

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def teacher():
    with FakeOpenAIServer(model="fake-teacher", api_key="sk-good") as server:
        yield server


@pytest.fixture
def world(tmp_path, s3_env, tiny_model, shared_data, teacher, monkeypatch):
    work = prepare_sample_taxonomy(tmp_path / "repos")
    bare = tmp_path / "repos" / "taxonomy.git"
    gitrepo.git("clone", "--quiet", "--bare", str(work), str(bare))
    client = storage.s3_client()
    for bucket in ("pf-models", "pf-cache"):
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
    storage.upload_dir(tiny_model, "s3://pf-models/tiny")
    client.put_object(Bucket="pf-models", Key="no-tokenizer/config.json", Body=b"{}")
    monkeypatch.setenv("TEACHER_API_KEY", "sk-good")
    monkeypatch.setenv("JUDGE_API_KEY", "sk-good")
    return {
        "taxonomy": bare.as_uri(), "taxonomy_ref": "main", "base": "production", "scope": "taxonomy",
        "base_model": "s3://pf-models/tiny", "teacher": teacher.base_url, "teacher_model": "fake-teacher",
        "judge": teacher.base_url, "judge_model": "fake-teacher", "questions": str(shared_data / "mt_bench"),
        "max_questions": 4, "training_preset": "smoke", "critique_profile": "smoke", "chunk_tokens": 500,
        "concurrency": 8, "samples_per_skill_leaf": 4, "max_steps": 2, "gpus": 1,
        "node_selector": {"nvidia.com/gpu.product": "H100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "checkpoint_selection": "last", "production_model_name": "labpipe-model", "gate_tolerance": 0.0,
        "generation_cache": "s3://pf-cache/generation",
    }


def test_a_correct_configuration_passes(world, mlflow_server_url):
    result = run_preflight(PreflightConfig(params={**world, "mlflow_tracking_uri": mlflow_server_url}))
    text = "\n".join(result["passed"])
    for fragment in ("parameters", "taxonomy", "teacher", "judge", "base_model", "generation_cache", "mlflow",
                     "MT-Bench: 4 questions"):
        assert fragment in text, fragment
    assert "none registered as labpipe-model yet" in text
    # the marker written to the cache location was deleted again
    bucket, prefix = storage.split_s3(world["generation_cache"])
    listed = storage.s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_everything_wrong_is_one_report(world, monkeypatch, tmp_path):
    monkeypatch.setenv("TEACHER_API_KEY", "sk-wrong")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # in a pod: no MT-Bench download
    monkeypatch.delenv("LABPIPE_MT_BENCH_DATA", raising=False)
    bad = {
        **world,
        "taxonomy_ref": "no-such-branch",
        "judge_model": "gpt-99",
        "base_model": "s3://pf-models/no-tokenizer",
        "generation_cache": "s3://no-such-bucket/cache",
        "mlflow_tracking_uri": f"http://127.0.0.1:{_dead_port()}",
        "questions": "",
        "max_questions": 500,
        "training_preset": "huge",
        "tolerations": '[{"key": "x", "operatr": "Exists"}]',
        "training_nodes": 2,  # a TrainJob, but no s3:// checkpoint_root for its nodes to share
        "checkpoint_root": "",
    }
    report = check(bad, timeout=3)
    fields = sorted({p.field for p in report.problems})
    assert fields == sorted({"taxonomy_ref", "api_key", "judge_model", "base_model", "generation_cache",
                             "mlflow_tracking_uri", "questions", "max_questions", "training_preset",
                             "tolerations", "checkpoint_root"}), [str(p) for p in report.problems]
    by_field = {p.field: p for p in report.problems}
    assert "secret labpipe-teacher" in by_field["api_key"].where  # names the secret, not the key's value
    assert "sk-wrong" not in json.dumps([str(p) for p in report.problems])
    assert "tokenizer" in by_field["base_model"].message
    assert "LABPIPE_MT_BENCH_DATA" in by_field["questions"].message
    assert all(p.fix for p in report.problems)
    with pytest.raises(UserError) as err:
        run_preflight(PreflightConfig(params=bad, timeout=3))
    assert len(err.value.problems) == len(report.problems)


def test_production_commit_not_in_the_repository(world, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("labpipe-model")
    v = client.create_model_version("labpipe-model", source="s3://x", tags={"labpipe.taxonomy.commit": "ab" * 20})
    client.set_registered_model_alias("labpipe-model", "production", v.version)
    report = check({**world, "mlflow_tracking_uri": uri, "taxonomy_ref": ""}, timeout=5)
    [problem] = report.problems
    assert problem.rule == "production-commit" and problem.field == "base"
    assert "labpipe-model version 1" in problem.message


def test_cli_prints_every_problem_without_traceback(capsys):
    rc = main(["preflight", "--offline", "--param", "taxonomy=x", "--param", "base_model=y",
               "--param", "scope=everything", "--param", "node_selector=[1]"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "[scope]" in err and "[node_selector]" in err and len(err.strip().splitlines()) == 2

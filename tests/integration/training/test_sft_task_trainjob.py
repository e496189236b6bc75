"""The SFT task with training_nodes=2: it uploads its inputs to S3 (moto, real HTTP), submits a TrainJob to a FAKE
Kubernetes API server (tests/support/fake_kube.py) that plays the Trainer controller by running the job's own
command as 2 local "nodes" with the torch runtime's PET_* variables and only the env the spec gives them (the
S3 secret resolved by the fake), streams node 0's log, and downloads the slim model; the job is deleted. Against
both TrainJob CRDs the fake can serve (OpenShift AI 3.4-3.5's from opendatahub-io/trainer release/odh-3.5.0, and
upstream kubeflow/trainer's), with the platform's pruning (see tests/support/fake_kube.py)."""

from __future__ import annotations

import json

import pytest

from labpipe import storage
from labpipe.training import checkpoints, jobs
from labpipe.training.task import SftTaskConfig, run_sft_task
from tests.support.fake_kube import fake_kube_server, odh_training_crds, upstream_training_crds
from tests.support.servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.mark.parametrize("crds", [odh_training_crds, upstream_training_crds], ids=["odh-3.5", "upstream"])
def test_two_node_trainjob_through_s3(crds, s3_env, monkeypatch, tmp_path, tiny_model, training_sets, capfd):
    storage.s3_client().create_bucket(Bucket=f"tj-ckpt-{crds.__name__[:3]}")
    monkeypatch.setenv("LABPIPE_SERVICE_ACCOUNT", "pipeline-runner-labpipe")  # what the pipeline sets on the task
    with fake_kube_server(tmp_path, crds()) as (fake, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        fake.runner = {"workdir": str(tmp_path), "port": free_port()}
        fake.secrets["labpipe-s3"] = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                                      "AWS_S3_ENDPOINT": s3_env, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        out = tmp_path / "model-artifact"
        meta = run_sft_task(SftTaskConfig(
            phase="knowledge", base_model=str(tiny_model), data=str(training_sets[0]), out=str(out),
            max_steps=4, run_id="run-tj", training_nodes=2, gpus=1,
            checkpoint_root=f"s3://tj-ckpt-{crds.__name__[:3]}/labpipe", image="registry.internal/ml/labpipe-training@sha256:"
            + "0" * 64, s3_secret="labpipe-s3", ca_bundle="labpipe-ca", trusted_ca="odh-trusted-ca-bundle",
            queue_name="training",
        ))  # fmt: skip
        name = jobs.job_name("run-tj", "knowledge")
        assert fake.deleted == [name] and not fake.objects
        assert fake.requests[0] == ("POST", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/lab/trainjobs")
        stored = fake.created[-1]  # as the API server keeps it: nothing of the pod settings pruned
        assert not fake.warnings and stored["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "training"
        assert stored["spec"]["trainer"]["image"].startswith("registry.internal/ml/labpipe-training@sha256:")
        shape = stored["spec"].get("podTemplateOverrides") or stored["spec"]["runtimePatches"]
        assert "pipeline-runner-labpipe" in str(shape) and "odh-trusted-ca-bundle" in str(shape)
    assert meta["backend"] == "trainjob" and meta["world_size"] == 2 and meta["steps"] == 4
    assert sorted(p.name for p in out.iterdir() if p.name != ".labpipe-output") == ["model", checkpoints.SUMMARY]
    assert json.loads((out / checkpoints.SUMMARY).read_text()) == meta
    durable = f"s3://tj-ckpt-{crds.__name__[:3]}/labpipe/run-tj/knowledge"
    assert meta["checkpoint_dir"] == durable
    assert checkpoints.remote_checkpoints(durable) == ["checkpoint-3", "checkpoint-4"]
    assert '"steps": 4' in capfd.readouterr().err  # node 0's log reached the task's log


def test_multi_node_without_an_s3_checkpoint_root_is_a_user_error(tmp_path):
    from labpipe.errors import UserError

    with pytest.raises(UserError, match="training_backend=trainjob needs an s3:// checkpoint_root"):
        run_sft_task(SftTaskConfig(phase="skills", base_model="m", data="d", out=str(tmp_path / "o"),
                                   training_nodes=2))  # fmt: skip
    with pytest.raises(UserError, match="unknown backend 'slurm'"):
        run_sft_task(SftTaskConfig(phase="skills", base_model="m", data="d", out=str(tmp_path / "o"),
                                   training_backend="slurm"))  # fmt: skip


def test_a_job_whose_batch_does_not_divide_is_refused_before_submission(tmp_path, training_sets):
    from labpipe.errors import UserError

    # smoke: effective batch 4, per-device 2; 3 nodes x 1 GPU = 6 per step does not divide 4
    with pytest.raises(UserError, match="not a multiple of per_device_batch_size 2 x world size 3"):
        run_sft_task(SftTaskConfig(phase="knowledge", base_model="s3://b/m", data=str(training_sets[0]),
                                   out=str(tmp_path / "o"), training_nodes=3, gpus=1,
                                   checkpoint_root="s3://b/ckpt"))  # fmt: skip

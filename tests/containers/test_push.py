"""scripts/build-images.sh --push: pushes every stage image to a registry, writes the pushed digests into the
lock file the components read, and `labpipe compile` puts image@sha256:... everywhere an image is named: every
task of the YAML, the `training_image` parameter the SFT task gives the TrainJob / PyTorchJob it submits (an input
of the task, not the lock file inside its image), and the kustomize component that pins the weekly CronJob.

Against a real (minimal, in-process) OCI registry on 127.0.0.1; small images stand in for the 2 GB stage
images (the push and pin logic is the same, the test stays fast)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from labpipe.components.images import IMAGES

from tests.support.container_runner import podman
from tests.support.oci_registry import Registry

ROOT = Path(__file__).resolve().parents[2]


def test_push_pins_digests_in_the_lock_and_the_compiled_yaml(tmp_path, image_prefix):
    (tmp_path / "Containerfile").write_text("FROM scratch\nCOPY stage.txt /stage.txt\n")
    for stage in IMAGES:  # one small, distinct image per stage name
        (tmp_path / "stage.txt").write_text(stage)
        podman("build", "-q", "-t", f"localhost/pushtest/labpipe-{stage}:t", str(tmp_path))
    lock = tmp_path / "images.lock.json"
    env = {**os.environ, "LABPIPE_IMAGES_LOCK": str(lock)}
    with Registry() as registry:
        subprocess.run([str(ROOT / "scripts" / "build-images.sh"), "--engine", "podman", "--registry",
                        "localhost/pushtest", "--tag", "t", "--skip-build", "--push", f"{registry.address}/ml",
                        "--push-insecure"], check=True, env=env, cwd=ROOT)
        pinned = json.loads(lock.read_text())
        assert set(pinned) == set(IMAGES)
        for stage, ref in pinned.items():
            _, body = registry.manifests[(f"ml/labpipe-{stage}", "t")]  # what the registry holds under the tag
            assert ref == f"{registry.address}/ml/labpipe-{stage}@sha256:{hashlib.sha256(body).hexdigest()}"
    out, manifests = tmp_path / "pipeline.yaml", tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests", manifests)
    compile_env = {k: v for k, v in env.items() if not k.startswith("LABPIPE_IMAGE_")}
    subprocess.run([str(Path(sys.executable).with_name("labpipe")), "compile", "--out", str(out), "--images-out",
                    str(manifests / "images")], check=True, env=compile_env, capture_output=True)  # fmt: skip
    text = out.read_text()
    for ref in pinned.values():
        assert f"image: {ref}" in text
    assert "image: quay.io/" not in text  # every task pinned by digest
    # the job the SFT task submits: its image is the task's training_image input, the pipeline parameter whose
    # default is the pushed training digest
    spec = next(yaml.safe_load_all(text))
    assert spec["root"]["inputDefinitions"]["parameters"]["training_image"]["defaultValue"] == pinned["training"]
    sft = next(t for c in spec["components"].values() for n, t in c.get("dag", {}).get("tasks", {}).items()
               if n == "sft")  # fmt: skip
    assert sft["inputs"]["parameters"]["training_image"]["componentInputParameter"] == "pipelinechannel--training_image"
    from labpipe.training import jobs

    job = jobs.manifest(jobs.JobSpec(name="labpipe-knowledge-x", namespace="lab", train_argv=[], image=spec["root"][
        "inputDefinitions"]["parameters"]["training_image"]["defaultValue"]))  # fmt: skip
    assert job["spec"]["trainer"]["image"] == pinned["training"]
    # the weekly CronJob, rendered with the component compile wrote
    rendered = subprocess.run(["kubectl", "kustomize", str(manifests / "overlays" / "weekly-cronjob")], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
    cron = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "CronJob")
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == pinned["taxonomy"]
    for stage in IMAGES:
        podman("rmi", f"localhost/pushtest/labpipe-{stage}:t", check=False)

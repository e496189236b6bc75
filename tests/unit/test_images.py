"""Images: every stage image named in components/images.py has a Containerfile built on a pinned base, with
what the stages need (xgrammar, writable caches, labels); the lock file pins digests into the compiled YAML.

Building and running the images is tests/containers/ (`make test-containers`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from labpipe.components.images import IMAGES, image_for, pinned_images

from tests.support.compiled import compiled_text

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "images"
DIGEST = "sha256:" + "ab" * 32


def test_each_stage_image_has_a_containerfile():
    for stage in IMAGES:
        assert (IMAGES_DIR / f"Containerfile.{stage}").exists(), stage


def test_base_image_runs_as_arbitrary_non_root_uid():
    text = (IMAGES_DIR / "Containerfile.base").read_text()
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users[-1] == "1001"  # the last USER wins: the image runs non-root
    assert "chmod -R g=u" in text  # group 0 can write: OpenShift's arbitrary UID runs in group 0


def test_base_is_pinned_by_digest_and_swappable():
    text = (IMAGES_DIR / "Containerfile.base").read_text()
    [default] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert re.fullmatch(r"registry\.access\.redhat\.com/ubi9/python-311@sha256:[0-9a-f]{64}", default)
    assert "FROM ${PYTHON_IMAGE}" in text


def test_base_installs_the_no_deps_extras_and_caches_are_group_writable():
    text = (IMAGES_DIR / "Containerfile.base").read_text()
    assert re.search(r"^COPY .*requirements-nodeps\.txt", text, re.M)  # referenced AND copied
    assert "--no-deps -c constraints.txt -r requirements-nodeps.txt" in text
    for var in ("HOME", "XDG_CACHE_HOME", "HF_HOME", "TRITON_CACHE_DIR", "LABPIPE_CACHE", "PIP_CACHE_DIR"):
        assert re.search(rf"\b{var}=/opt/app-root/src", text), var
    # the CA bundle is a build secret (mounted for a RUN), never COPY'd into a layer
    assert "--mount=type=secret,id=ca" in text and "COPY" not in "".join(
        line for line in text.splitlines() if "ca-certificates" in line or "ca-bundle" in line)


@pytest.mark.parametrize("name", ["base", *IMAGES])
def test_every_image_carries_the_oci_labels(name):
    text = (IMAGES_DIR / f"Containerfile.{name}").read_text()
    for label in ("title", "source", "revision", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text, (name, label)


def test_evaluation_image_bakes_mt_bench_with_the_library_pins():
    text = (IMAGES_DIR / "Containerfile.evaluation").read_text()
    assert "ENV LABPIPE_MT_BENCH_DATA=" in text and "mt_bench_fetch.py" in text
    fetch = (IMAGES_DIR / "mt_bench_fetch.py").read_text()
    assert "verify=True" in fetch and "sources.QUESTIONS" in fetch  # one list of pins: the library's


def test_mt_bench_data_env_is_where_the_library_looks(monkeypatch, shared_data):
    from labpipe.evaluation import sources
    from labpipe.evaluation.questions import load_questions

    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    assert sources.resolve("", sources.QUESTIONS) == sources.QUESTIONS.url
    monkeypatch.setenv(sources.DATA_ENV, str(shared_data / "mt_bench"))
    assert sources.resolve("", sources.JUDGE_PROMPTS) == str(shared_data / "mt_bench" / "judge_prompts.jsonl")
    questions, digest = load_questions("")
    assert len(questions) == 80 and digest == sources.QUESTIONS.sha256


def test_image_override(monkeypatch):
    monkeypatch.setenv("LABPIPE_IMAGE_REGISTRY", "registry.local/ml/")
    monkeypatch.setenv("LABPIPE_IMAGE_TAG", "dev")
    assert image_for("training") == "registry.local/ml/labpipe-training:dev"


def test_lock_file_pins_digests_unless_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv("LABPIPE_IMAGE_REGISTRY", raising=False)
    monkeypatch.delenv("LABPIPE_IMAGE_TAG", raising=False)
    lock = tmp_path / "images.lock.json"
    lock.write_text(json.dumps({"training": f"registry.internal/ml/labpipe-training@{DIGEST}"}))
    assert image_for("training", lock) == f"registry.internal/ml/labpipe-training@{DIGEST}"
    assert image_for("taxonomy", lock) == "quay.io/labpipe/labpipe-taxonomy:0.1.0"  # not pinned: the default
    monkeypatch.setenv("LABPIPE_IMAGE_TAG", "ci")  # a local build overrides the lock
    assert image_for("training", lock) == "quay.io/labpipe/labpipe-training:ci"
    lock.write_text(json.dumps({"training": "registry.internal/ml/labpipe-training:latest"}))
    with pytest.raises(ValueError, match="image@sha256"):
        pinned_images(lock)


def test_checked_in_lock_is_valid_and_matches_the_compiled_yaml():
    pinned = pinned_images()
    compiled = compiled_text()
    for stage, ref in pinned.items():
        assert f"image: {ref}" in compiled, f"{stage}: run `labpipe compile` after build-images.sh --push"


def test_labpipe_compile_puts_the_pinned_digests_in_the_yaml(tmp_path):
    ref = f"registry.internal/ml/labpipe-evaluation@{DIGEST}"
    lock = tmp_path / "images.lock.json"
    lock.write_text(json.dumps({"evaluation": ref}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABPIPE_IMAGE_")}
    out = tmp_path / "pipeline.yaml"
    subprocess.run([str(Path(sys.executable).with_name("labpipe")), "compile", "--out", str(out)], check=True,
                   env={**env, "LABPIPE_IMAGES_LOCK": str(lock)}, capture_output=True)
    text = out.read_text()
    assert f"image: {ref}" in text  # every task of the evaluation image (mt-bench-eval, publish, ...)
    assert "labpipe-evaluation:0.1.0" not in text, "an evaluation task kept the unpinned tag"
    assert "image: quay.io/labpipe/labpipe-training:0.1.0" in text


def test_build_script_parses_and_documents_its_options():
    script = ROOT / "scripts" / "build-images.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    out = subprocess.run([str(script), "--help"], check=True, capture_output=True, text=True).stdout
    for option in ("--ca-bundle", "--push", "--local-base", "--torch-index-url", "--cpu-training", "--engine"):
        assert option in out
    bad = subprocess.run([str(script), "--ca-bundle", "/nonexistent.pem"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--ca-bundle /nonexistent.pem" in bad.stderr


def test_gpu_evaluation_image_pins_vllm_in_its_own_environment():
    """evaluation_engine=vllm: vLLM at one exact version, beside labpipe (its pins conflict with ours), where
    labpipe.evaluation.engines looks for it."""
    from labpipe.evaluation.engines import VLLM_PYTHON_ENV

    text = (IMAGES_DIR / "Containerfile.evaluation-gpu").read_text()
    [version] = re.findall(r"^ARG VLLM_VERSION=(\S+)$", text, re.M)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert '"vllm==${VLLM_VERSION}"' in text and "python -m venv /opt/vllm" in text
    assert re.search(rf"\b{VLLM_PYTHON_ENV}=/opt/vllm/bin/python\b", text)
    assert re.search(r"^ARG BASE=\S+/labpipe-evaluation:", text, re.M)  # the evaluation image underneath
    script = (ROOT / "scripts" / "build-images.sh").read_text()
    assert 'base="$REGISTRY/labpipe-evaluation:$TAG"' in script
    assert "--no-gpu-evaluation" in (ROOT / "scripts" / "test-containers.sh").read_text()  # never built in CI

"""Every image named in components/images.py has a Containerfile, and images run as non-root."""

from __future__ import annotations

from pathlib import Path

from labpipe.components.images import IMAGES, image_for

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"


def test_each_stage_image_has_a_containerfile():
    for stage in IMAGES:
        assert (IMAGES_DIR / f"Containerfile.{stage}").exists(), stage


def test_base_image_runs_as_arbitrary_non_root_uid():
    text = (IMAGES_DIR / "Containerfile.base").read_text()
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users[-1] == "1001"  # the last USER wins: the image runs non-root
    assert "chmod -R g=u" in text  # group 0 can write: OpenShift's arbitrary UID runs in group 0


def test_image_override(monkeypatch):
    monkeypatch.setenv("LABPIPE_IMAGE_REGISTRY", "registry.local/ml/")
    monkeypatch.setenv("LABPIPE_IMAGE_TAG", "dev")
    assert image_for("training") == "registry.local/ml/labpipe-training:dev"

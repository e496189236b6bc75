"""The container run: images built by scripts/build-images.sh, the compiled pipeline executed in them.

`make test-containers` builds the images (localhost/labpipe/*:ci) and runs these tests with
LABPIPE_TEST_IMAGES=localhost/labpipe:ci. Without it (the plain unit/integration run, before any image
exists) the module is skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LABPIPE_TEST_IMAGES"):
        return
    skip = pytest.mark.skip(reason="container run: `make test-containers` builds the images and sets LABPIPE_TEST_IMAGES")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def image_prefix() -> tuple[str, str]:
    """(registry, tag) of the locally built images, from LABPIPE_TEST_IMAGES=REGISTRY:TAG."""
    spec = os.environ["LABPIPE_TEST_IMAGES"]
    registry, _, tag = spec.rpartition(":")
    assert shutil.which("podman"), "podman is not installed (make test-containers installs it in CI)"
    return registry, tag


@pytest.fixture(scope="session")
def compiled_yaml(image_prefix, tmp_path_factory) -> Path:
    """pipelines/lab_pipeline.py compiled by `labpipe compile` with the local image names."""
    registry, tag = image_prefix
    out = tmp_path_factory.mktemp("compiled") / "lab_pipeline.yaml"
    env = {**os.environ, "LABPIPE_IMAGE_REGISTRY": registry, "LABPIPE_IMAGE_TAG": tag}
    labpipe = Path(sys.executable).with_name("labpipe")
    subprocess.run([str(labpipe), "compile", "--out", str(out)], check=True, env=env, cwd=ROOT)
    return out

"""The one place that names each component's container image.

Resolution, first match wins:
1. LABPIPE_IMAGE_REGISTRY / LABPIPE_IMAGE_TAG set at compile time: REGISTRY/labpipe-<stage>:TAG (local builds,
   e.g. `make test-containers` compiles with localhost/labpipe and tag ci);
2. components/images.lock.json, or the file LABPIPE_IMAGES_LOCK names (written by `scripts/build-images.sh --push REGISTRY`): the pushed
   REGISTRY/labpipe-<stage>@sha256:... digest, so the compiled YAML pins exactly what was built;
3. the defaults: quay.io/labpipe/labpipe-<stage>:<version>.
Images are built from images/Containerfile.* by scripts/build-images.sh.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_REGISTRY = "quay.io/labpipe"
DEFAULT_TAG = "0.1.0"
# LABPIPE_IMAGES_LOCK: another lock file (e.g. one per deployment); default: the one beside this module.
LOCK_FILE = Path(os.environ.get("LABPIPE_IMAGES_LOCK") or Path(__file__).with_name("images.lock.json"))

# stage -> image name; stages that share dependencies share an image.
IMAGES = {
    "taxonomy": "labpipe-taxonomy",  # taxonomy diff, seed extraction: git, pyyaml, tokenizers
    "generation": "labpipe-generation",  # synthetic generation, critique: httpx, transformers, xgrammar
    "training": "labpipe-training",  # knowledge and skill SFT: torch (CUDA), trl, accelerate
    "evaluation": "labpipe-evaluation",  # MT-Bench: transformers, matplotlib
    "evaluation-gpu": "labpipe-evaluation-gpu",  # MT-Bench with engine=vllm: the above + vLLM (pinned, own venv)
}


def pinned_images(lock: Path = LOCK_FILE) -> dict[str, str]:
    """stage -> image@sha256:... from the lock file ({} when absent or empty)."""
    if not lock.exists():
        return {}
    pinned = json.loads(lock.read_text() or "{}")
    for stage, ref in pinned.items():
        if stage not in IMAGES or "@sha256:" not in ref:
            raise ValueError(f"{lock}: {stage}: {ref!r} is not an image@sha256:... reference of a known stage "
                             f"({', '.join(IMAGES)}); rewrite it with scripts/build-images.sh --push REGISTRY")
    return pinned


def image_for(stage: str, lock: Path = LOCK_FILE) -> str:
    registry, tag = os.environ.get("LABPIPE_IMAGE_REGISTRY"), os.environ.get("LABPIPE_IMAGE_TAG")
    if not registry and not tag:
        pinned = pinned_images(lock).get(stage)
        if pinned:
            return pinned
    return f"{(registry or DEFAULT_REGISTRY).rstrip('/')}/{IMAGES[stage]}:{tag or DEFAULT_TAG}"


def kustomize_images(lock: Path = LOCK_FILE) -> str:
    """A kustomize Component that points every manifest's reference to a stage image (quay.io/labpipe/<image>,
    as written in manifests/) at the image `image_for` resolves: the pushed digest after
    `scripts/build-images.sh --push`. `labpipe compile` writes it to manifests/images/ (the weekly CronJob uses it)."""
    lines = ["# Written by `labpipe compile` from the image pins (components/images.lock.json after",
             "# `scripts/build-images.sh --push REGISTRY`): the weekly CronJob runs the pushed image by digest.",
             "apiVersion: kustomize.config.k8s.io/v1alpha1", "kind: Component", "images:"]  # fmt: skip
    for stage, name in IMAGES.items():
        ref = image_for(stage, lock)
        lines.append(f"  - name: {DEFAULT_REGISTRY}/{name}")
        if "@sha256:" in ref:
            new_name, digest = ref.split("@", 1)
            lines += [f"    newName: {new_name}", f"    digest: {digest}"]
        else:
            new_name, tag = ref.rsplit(":", 1)
            lines += [f"    newName: {new_name}", f"    newTag: {tag}"]
    return "\n".join(lines) + "\n"

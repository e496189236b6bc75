"""The one place that names each component's container image.

Override the registry and tag for a whole deployment with LABPIPE_IMAGE_REGISTRY / LABPIPE_IMAGE_TAG
at compile time (the checked-in YAML uses the defaults). Images are built from images/Containerfile.*.
"""

from __future__ import annotations

import os

DEFAULT_REGISTRY = "quay.io/labpipe"
DEFAULT_TAG = "0.1.0"

# stage -> image name; stages that share dependencies share an image.
IMAGES = {
    "taxonomy": "labpipe-taxonomy",  # taxonomy diff, seed extraction: git, pyyaml, tokenizers
    "generation": "labpipe-generation",  # synthetic generation, critique: httpx, transformers, xgrammar
    "training": "labpipe-training",  # knowledge and skill SFT: torch (CUDA), trl, accelerate
    "evaluation": "labpipe-evaluation",  # MT-Bench: transformers, matplotlib
}


def image_for(stage: str) -> str:
    registry = os.environ.get("LABPIPE_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")
    tag = os.environ.get("LABPIPE_IMAGE_TAG", DEFAULT_TAG)
    return f"{registry}/{IMAGES[stage]}:{tag}"

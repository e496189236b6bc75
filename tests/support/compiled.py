"""The checked-in compiled pipeline (pipelines/lab_pipeline.yaml), read the one way every test reads it.

The file holds two YAML documents: the pipeline spec (IR) and the kfp-kubernetes platform spec.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from labpipe.paths import pipelines_dir


def compiled_path() -> Path:
    return Path(pipelines_dir()) / "lab_pipeline.yaml"


def compiled_text(path: str | Path | None = None) -> str:
    return Path(path or compiled_path()).read_text()


def compiled_docs(path: str | Path | None = None) -> list[dict]:
    """Every non-empty YAML document of the compiled pipeline, in order."""
    return [d for d in yaml.safe_load_all(compiled_text(path)) if d]


def pipeline_spec(path: str | Path | None = None) -> dict:
    """The pipeline spec (IR): the first document."""
    return compiled_docs(path)[0]


def platform_spec(path: str | Path | None = None) -> dict:
    """The kfp-kubernetes platform spec: the document holding `platforms`."""
    return next(d for d in compiled_docs(path) if "platforms" in d)


def executors(path: str | Path | None = None) -> dict:
    """The platform spec's executors (secrets, node selectors, tolerations per executor)."""
    return platform_spec(path)["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

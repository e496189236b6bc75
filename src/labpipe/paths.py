"""Where labpipe's shipped folders are, in an installed wheel and in an editable checkout, and the names of
the files one stage hands the next (written by taxonomy_diff, read by seeds, publish and nothing_to_do)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
DIFF_FILE = "diff.json"  # the taxonomy diff document, in the diff artifact
LEAVES_DIR = "leaves"  # the changed leaves' files, in the diff artifact


def _installed(package: str, folder: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return _REPO / folder  # editable install: the repository folder itself


def sample_taxonomy_dir() -> Path:
    """The sample taxonomy (repository folder taxonomy/, installed as labpipe.sample_taxonomy)."""
    return _installed("labpipe.sample_taxonomy", "taxonomy")


def pipelines_dir() -> Path:
    return _installed("labpipe.pipelines", "pipelines")

"""Trained weights, compared the one way the training tests compare them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_weights(path: str | Path) -> dict[str, Any]:
    """The tensors of a saved model: `path` is the model folder or a training output holding `model/`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "model.safetensors").exists() and (path / "model" / "model.safetensors").exists():
        path = path / "model"
    return load_file(str(path / "model.safetensors"))


def max_weight_diff(a: str | Path | dict, b: str | Path | dict) -> float:
    """The largest absolute difference between two models' tensors (0 when they are equal)."""
    wa = a if isinstance(a, dict) else load_weights(a)
    wb = b if isinstance(b, dict) else load_weights(b)
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)

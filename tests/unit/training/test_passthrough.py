"""A skills-only taxonomy change: the knowledge phase has no data and passes the base model through."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from labpipe.training.config import TrainingConfig
from labpipe.training.passthrough import skip_empty_knowledge_phase


def test_empty_knowledge_set_passes_the_base_model_through(tiny_model, tmp_path):
    data = tmp_path / "knowledge.jsonl"
    data.write_text("\n")
    out = tmp_path / "knowledge-out"
    summary = skip_empty_knowledge_phase(TrainingConfig(phase="knowledge", base_model=str(tiny_model),
                                                        data=str(data), out=str(out)))
    assert summary["skipped"] is True and summary["steps"] == 0
    assert json.loads((out / "training_summary.json").read_text()) == summary
    before, after = load_file(tiny_model / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    assert before.keys() == after.keys() and all((before[k] == after[k]).all() for k in before)


@pytest.mark.parametrize("phase, rows", [("knowledge", '{"messages": []}\n'), ("skills", "")])
def test_only_an_empty_knowledge_phase_is_skipped(tiny_model, tmp_path, phase, rows):
    data = tmp_path / "data.jsonl"
    data.write_text(rows)
    config = TrainingConfig(phase=phase, base_model=str(tiny_model), data=str(data), out=str(tmp_path / "out"))
    assert skip_empty_knowledge_phase(config) is None
    assert not (tmp_path / "out").exists()

"""Bad input to run_training fails with a clear UserError before training starts (nothing is written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labpipe.errors import UserError
from labpipe.models.tiny import CHAT_TEMPLATE
from labpipe.training.config import TrainingConfig
from labpipe.training.stage import run_training


@pytest.fixture(scope="module")
def untemplated_model(tiny_model, tmp_path_factory):
    """The tiny model with its chat template removed."""
    path = tmp_path_factory.mktemp("untemplated") / "model"
    shutil.copytree(tiny_model, path)
    (path / "chat_template.jinja").unlink()
    return path


def _config(tmp_path, model, data, **kw):
    return TrainingConfig(
        phase=kw.pop("phase", "knowledge"),
        base_model=str(model),
        data=str(data),
        out=str(tmp_path / "out"),
        **kw,
    )


def _fails(config, match):
    with pytest.raises(UserError, match=match) as err:
        run_training(config)
    assert not Path(config.out).exists()
    return err.value.problems[0]


def test_max_length_beyond_the_model(tmp_path, tiny_model, training_sets):
    limit = json.loads((tiny_model / "config.json").read_text())["max_position_embeddings"]
    problem = _fails(
        _config(tmp_path, tiny_model, training_sets[0], overrides={"max_length": limit + 1}),
        f"max_position_embeddings {limit}",
    )
    assert problem.field == "max_length" and problem.where.endswith("smoke/knowledge.yaml")


def test_model_without_chat_template(tmp_path, untemplated_model, training_sets):
    problem = _fails(_config(tmp_path, untemplated_model, training_sets[0]), "no chat template")
    assert "--chat-template" in problem.fix


def test_missing_base_model(tmp_path, training_sets):
    _fails(_config(tmp_path, tmp_path / "nowhere", training_sets[0]), "directory not found")


def test_effective_batch_the_world_size_cannot_make(tmp_path, tiny_model, training_sets, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    _fails(_config(tmp_path, tiny_model, training_sets[0]), "effective_batch_size")


def test_replay_is_for_the_skills_phase(tmp_path, tiny_model, training_sets):
    _fails(_config(tmp_path, tiny_model, training_sets[0], replay=str(training_sets[0])), "skills phase only")


def test_malformed_data(tmp_path, tiny_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    problem = _fails(_config(tmp_path, tiny_model, bad), "no assistant message")
    assert problem.where == f"{bad}:1"


def test_a_supplied_chat_template_is_used_and_saved(tmp_path, untemplated_model, training_sets):
    template = tmp_path / "chat.jinja"
    template.write_text(CHAT_TEMPLATE)
    config = _config(
        tmp_path, untemplated_model, training_sets[0], chat_template=str(template), overrides={"max_steps": 1}
    )
    summary = run_training(config)
    assert summary["steps"] == 1
    assert (tmp_path / "out" / "model" / "chat_template.jinja").read_text() == CHAT_TEMPLATE

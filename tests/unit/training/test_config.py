"""Phase configs: the shipped presets load and carry the published values; bad files fail with file:line."""

from __future__ import annotations

import pytest

from labpipe.errors import UserError
from labpipe.training.config import PHASES, PRESETS, PhaseConfig, TrainingConfig, load_phase_file, load_preset


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("phase", PHASES)
def test_every_shipped_preset_loads(preset, phase):
    cfg = load_preset(preset, phase)
    assert cfg.phase == phase
    assert cfg.packing
    assert cfg.lr_scheduler == "constant_with_warmup"  # no decay to zero between phases


def test_lab_preset_has_the_published_values():
    knowledge, skills = load_preset("lab", "knowledge"), load_preset("lab", "skills")
    assert (knowledge.epochs, knowledge.learning_rate, knowledge.effective_batch_size) == (7, 2e-5, 128)
    assert (skills.epochs, skills.learning_rate, skills.effective_batch_size) == (10, 6e-6, 3840)
    assert knowledge.warmup_steps > 0 and skills.warmup_steps > 0
    assert knowledge.unmask_user and not skills.unmask_user


def test_gradient_accumulation_is_derived_from_world_size():
    cfg = load_preset("lab", "skills")
    assert cfg.gradient_accumulation(world_size=8) == 3840 // (8 * 8)
    assert cfg.gradient_accumulation(world_size=1) == 480


def test_an_effective_batch_the_world_cannot_make_is_refused():
    with pytest.raises(UserError) as err:
        load_preset("lab", "knowledge").gradient_accumulation(world_size=3, where="lab/knowledge.yaml")
    problem = err.value.problems[0]
    assert problem.field == "effective_batch_size" and "world size 3" in problem.message


def test_unknown_key_and_bad_types_are_located(tmp_path):
    path = tmp_path / "knowledge.yaml"
    path.write_text("phase: knowledge\nepochs: seven\nlearnig_rate: 1e-5\noverlong: wrap\n")
    with pytest.raises(UserError) as err:
        load_phase_file(path)
    by_field = {p.field: p for p in err.value.problems}
    assert by_field["epochs"].where == f"{path}:2:1" and by_field["epochs"].rule == "type"
    assert by_field["learnig_rate"].where == f"{path}:3:1" and by_field["learnig_rate"].rule == "unknown-key"
    assert by_field["overlong"].rule == "value"


def test_yaml_syntax_error_is_located(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("phase: knowledge\nepochs: [1\n")
    with pytest.raises(UserError) as err:
        load_phase_file(path)
    assert err.value.problems[0].where.startswith(f"{path}:")
    assert err.value.problems[0].rule == "yaml"


def test_config_file_for_the_other_phase_is_refused(tmp_path):
    path = tmp_path / "skills.yaml"
    path.write_text("phase: skills\n")
    cfg = TrainingConfig(phase="knowledge", base_model="m", data="d", out="o", config_file=str(path))
    with pytest.raises(UserError, match="phase-mismatch"):
        cfg.load_phase()


def test_overrides_are_validated_too():
    cfg = TrainingConfig(phase="knowledge", base_model="m", data="d", out="o", overrides={"max_steps": 3})
    assert cfg.load_phase().max_steps == 3
    bad = TrainingConfig(phase="knowledge", base_model="m", data="d", out="o", overrides={"keep_last": 0})
    with pytest.raises(UserError, match="keep_last"):
        bad.load_phase()


def test_defaults_are_a_valid_config():
    assert PhaseConfig(phase="skills").gradient_accumulation(1) == 8

"""The SFT components under kfp.local: knowledge_sft from a base model path, skill_sft from its Model artifact.

No `from __future__ import annotations` here: kfp reads the component annotations as real types.
"""

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_knowledge_then_skill_sft_under_kfp_local(tmp_path, tiny_model, training_sets):
    from kfp import compiler, dsl, local
    from kfp.dsl import Dataset, Output
    from labpipe.components.knowledge_sft.component import knowledge_sft
    from labpipe.components.skill_sft.component import skill_sft

    @dsl.component
    def training_sets_from(
        knowledge_src: str, skills_src: str, knowledge: Output[Dataset], skills: Output[Dataset]
    ):
        import shutil

        shutil.copy(knowledge_src, knowledge.path)
        shutil.copy(skills_src, skills.path)

    @dsl.pipeline
    def phased(base_model: str, knowledge_src: str, skills_src: str):
        sets = training_sets_from(knowledge_src=knowledge_src, skills_src=skills_src)
        k = knowledge_sft(
            base_model=base_model,
            data=sets.outputs["knowledge"],
            preset="smoke",
            max_steps=2,
            run_id="component-test",
            tracking_uri="",
        )
        skill_sft(
            knowledge_model=k.outputs["model"],
            data=sets.outputs["skills"],
            preset="smoke",
            max_steps=2,
            run_id="component-test",
            tracking_uri="",
        )

    compiler.Compiler().compile(phased, str(tmp_path / "phased.yaml"))  # the optional `base` input compiles
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    phased(base_model=str(tiny_model), knowledge_src=str(training_sets[0]), skills_src=str(training_sets[1]))

    knowledge_out, skills_out = (
        next((tmp_path / "root").glob(f"*/{task}/model")) for task in ("sft", "sft-2")
    )
    k_summary = json.loads((knowledge_out / "training_summary.json").read_text())
    s_summary = json.loads((skills_out / "training_summary.json").read_text())
    assert k_summary["steps"] == s_summary["steps"] == 2
    assert Path(s_summary["base_model"]) == knowledge_out  # the skill phase starts from the knowledge Model
    assert (skills_out / "model" / "model.safetensors").exists()
    # the slim Model artifact: no checkpoints inside; they are in the durable location (default: LABPIPE_CACHE)
    for out, summary, phase in ((knowledge_out, k_summary, "knowledge"), (skills_out, s_summary, "skills")):
        assert sorted(p.name for p in out.iterdir() if p.name != ".labpipe-output") == ["model", "training_summary.json"]
        durable = Path(summary["checkpoint_dir"])  # keyed by the training's inputs: a rerun resumes (issue 20)
        assert durable.parent.parent == Path(os.environ["LABPIPE_CACHE"]) / "checkpoints" and durable.name == phase
        assert durable.parent.name.startswith("inputs-")
        assert [p.name for p in (durable / "checkpoints").iterdir()] == ["checkpoint-2"] == summary["checkpoints"]

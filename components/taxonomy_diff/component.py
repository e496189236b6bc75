"""KFP component: the leaves to train on (changed since `base`, or the whole taxonomy), validated and copied
out, and the plan: train, or nothing to do (nothing changed since the production model)."""

from kfp import dsl
from kfp.dsl import Dataset, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("taxonomy"))
def taxonomy_diff(
    taxonomy: str,
    taxonomy_ref: str,
    base: str,
    run_id: str,
    tracking_uri: str,
    diff: Output[Dataset],
    scope: str = "changed",
    production_model_name: str = "",
    force: bool = False,
    base_model: str = "",
    teacher: str = "",
    teacher_model: str = "",
    judge: str = "",
    judge_model: str = "",
    training_preset: str = "lab",
    max_steps: int = 0,
    critique_profile: str = "lab",
    samples_per_skill_leaf: int = 30,
    seed: int = 42,
    chunk_tokens: int = 1000,
    generation_gate: bool = True,
) -> bool:
    """Diff `taxonomy` (dir or git URL, at `taxonomy_ref`) against `base` ("empty": every leaf; "production":
    the commit of production_model_name@production); validate. Returns False when there is nothing to do.
    The remaining parameters are the fingerprint compared with the production model's."""
    from labpipe.registry.production import ModelInputs
    from labpipe.taskio import finish, start
    from labpipe.taxonomy.stage import TaxonomyDiffConfig, run_taxonomy_diff

    start()  # a UserError prints its problems, no traceback
    inputs = ModelInputs(base_model=base_model, teacher=teacher, teacher_model=teacher_model, judge=judge,
                         judge_model=judge_model, training_preset=training_preset, max_steps=max_steps,
                         critique_profile=critique_profile, samples_per_skill_leaf=samples_per_skill_leaf,
                         seed=seed, chunk_tokens=chunk_tokens, generation_gate=generation_gate)
    meta = run_taxonomy_diff(
        TaxonomyDiffConfig(taxonomy=taxonomy, taxonomy_ref=taxonomy_ref, base=base, out=diff.path, run_id=run_id,
                           tracking_uri=tracking_uri, scope=scope, production_model_name=production_model_name,
                           force=force, inputs=inputs)
    )
    finish("taxonomy_diff", meta, run_id=run_id, tracking_uri=tracking_uri,
           inputs={"taxonomy": taxonomy, "taxonomy_ref": taxonomy_ref, "base": base}, outputs={"diff": diff})
    return bool(meta["train"])

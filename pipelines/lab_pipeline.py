"""The LAB pipeline: taxonomy diff -> seed extraction -> synthetic generation -> critique filtering
-> knowledge SFT -> skill SFT -> MT-Bench evaluation -> (gate) publish.

Only wiring lives here: every step is a component from components/, each a single call into the
labpipe library. Cluster concerns (secrets, GPUs, tolerations, node selectors) are set with
kfp-kubernetes from pipeline parameters; kfp.local ignores them, so the same DAG runs on a laptop.
`labpipe compile` writes lab_pipeline.yaml next to this file (checked in, drift-tested).
"""


import inspect

from kfp import dsl, kubernetes
from labpipe.components.critique_filter.component import critique_filter
from labpipe.components.knowledge_sft.component import knowledge_sft
from labpipe.components.mt_bench_eval.component import mt_bench_eval
from labpipe.components.publish_model.component import publish_model
from labpipe.components.seed_extraction.component import seed_extraction
from labpipe.components.skill_sft.component import skill_sft
from labpipe.components.synthetic_generation.component import synthetic_generation
from labpipe.components.taxonomy_diff.component import taxonomy_diff

# Secret keys -> environment variables the stages read (secret names are pipeline parameters).
ENDPOINT_SECRET_KEYS = {
    "teacher": {"endpoint": "TEACHER_ENDPOINT", "model": "TEACHER_MODEL", "api_key": "TEACHER_API_KEY"},
    "judge": {"endpoint": "JUDGE_ENDPOINT", "model": "JUDGE_MODEL", "api_key": "JUDGE_API_KEY"},
}
# An OpenShift AI data connection: the standard AWS variables the storage layer reads.
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_S3_ENDPOINT": "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION",
}
RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER


def _with_s3(task: dsl.PipelineTask, s3_secret) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_KEYS, optional=True)


def _with_endpoint(task: dsl.PipelineTask, role: str, secret) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=ENDPOINT_SECRET_KEYS[role],
                                        optional=True)


def _on_gpus(task: dsl.PipelineTask, gpus, node_selector, tolerations) -> dsl.PipelineTask:
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task


@dsl.pipeline(name="lab-pipeline", description="LAB: taxonomy -> synthetic data -> phased SFT -> MT-Bench, gated")
def lab_pipeline(
    taxonomy: str,
    base_model: str,
    base: str = "origin/main",
    taxonomy_ref: str = "",
    teacher: str = "",
    teacher_model: str = "",
    teacher_secret: str = "labpipe-teacher",
    judge: str = "",
    judge_model: str = "",
    judge_secret: str = "labpipe-judge",
    s3_secret: str = "labpipe-s3",
    chunk_tokens: int = 1000,
    generation_gate: bool = True,
    concurrency: int = 32,
    response_format: str = "auto",
    critique_profile: str = "lab",
    samples_per_skill_leaf: int = 30,
    seed: int = 42,
    training_preset: str = "lab",
    max_steps: int = 0,
    gpus: int = 1,
    node_selector: dict = {},  # noqa: B006 - KFP pipeline defaults are literals
    tolerations: list = [],  # noqa: B006
    questions: str = "",
    max_questions: int = 0,
    max_new_tokens: int = 1024,
    checkpoint_selection: str = "last",
    production_model_name: str = "labpipe-model",
    gate_tolerance: float = 0.0,
    mlflow_tracking_uri: str = "",
):
    diff = taxonomy_diff(taxonomy=taxonomy, taxonomy_ref=taxonomy_ref, base=base,
                         run_id=RUN_ID, tracking_uri=mlflow_tracking_uri).set_display_name("1 taxonomy diff")

    seeds = seed_extraction(diff=diff.outputs["diff"], tokenizer=base_model, chunk_tokens=chunk_tokens,
                            run_id=RUN_ID, tracking_uri=mlflow_tracking_uri).set_display_name("2 seed extraction")
    _with_s3(seeds, s3_secret)

    generated = synthetic_generation(
        seeds=seeds.outputs["seeds"], teacher=teacher, teacher_model=teacher_model, teacher_secret=teacher_secret,
        gate=generation_gate, concurrency=concurrency, run_id=RUN_ID, tracking_uri=mlflow_tracking_uri,
        response_format=response_format,
    ).set_display_name("3 synthetic generation")
    _with_endpoint(_with_s3(generated, s3_secret), "teacher", teacher_secret)

    critique = critique_filter(
        generated=generated.outputs["generated"], judge=judge, judge_model=judge_model, judge_secret=judge_secret,
        profile=critique_profile, samples_per_skill_leaf=samples_per_skill_leaf, seed=seed,
        run_id=RUN_ID, tracking_uri=mlflow_tracking_uri,
        response_format=response_format,
    ).set_display_name("4 critique filtering")
    _with_endpoint(_with_s3(critique, s3_secret), "judge", judge_secret)

    knowledge = knowledge_sft(
        base_model=base_model, data=critique.outputs["knowledge_set"], preset=training_preset, max_steps=max_steps,
        run_id=RUN_ID, tracking_uri=mlflow_tracking_uri,
    ).set_display_name("5 knowledge SFT")
    _on_gpus(_with_s3(knowledge, s3_secret), gpus, node_selector, tolerations)

    skills = skill_sft(
        knowledge_model=knowledge.outputs["model"], data=critique.outputs["skills_set"], preset=training_preset,
        max_steps=max_steps, run_id=RUN_ID, tracking_uri=mlflow_tracking_uri,
    ).set_display_name("6 skill SFT")
    _on_gpus(_with_s3(skills, s3_secret), gpus, node_selector, tolerations)

    evaluation = mt_bench_eval(
        candidate=skills.outputs["model"], base_model=base_model, judge=judge, judge_model=judge_model,
        judge_secret=judge_secret, questions=questions, max_questions=max_questions,
        max_new_tokens=max_new_tokens, checkpoint_selection=checkpoint_selection,
        production_model_name=production_model_name, tolerance=gate_tolerance,
        run_id=RUN_ID, tracking_uri=mlflow_tracking_uri,
    ).set_display_name("7 MT-Bench evaluation")
    _with_endpoint(_with_s3(evaluation, s3_secret), "judge", judge_secret)

    with dsl.If(evaluation.outputs["Output"] == True, name="gate passed"):  # noqa: E712 - a KFP condition
        publish_model(candidate=skills.outputs["model"], decision=evaluation.outputs["decision"],
                      production_model_name=production_model_name, run_id=RUN_ID,
                      tracking_uri=mlflow_tracking_uri).set_display_name("publish")


def pipeline_parameters() -> dict[str, object]:
    """Parameter name -> default (inspect.Parameter.empty when required)."""
    sig = inspect.signature(lab_pipeline.pipeline_func)
    return {name: p.default for name, p in sig.parameters.items()}

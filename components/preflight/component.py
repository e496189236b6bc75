"""KFP component: the pipeline's first task. Every misconfiguration in one report, in seconds."""

from kfp import dsl
from kfp.dsl import Markdown, Output
from labpipe.components.images import image_for


# The evaluation image: it has git (base image) and the baked-in MT-Bench data (LABPIPE_MT_BENCH_DATA).
@dsl.component(base_image=image_for("evaluation"))
def preflight(
    taxonomy: str,
    taxonomy_ref: str,
    base: str,
    scope: str,
    base_model: str,
    teacher: str,
    teacher_model: str,
    judge: str,
    judge_model: str,
    judge_secret: str,
    questions: str,
    max_questions: int,
    training_preset: str,
    critique_profile: str,
    chunk_tokens: int,
    concurrency: int,
    samples_per_skill_leaf: int,
    max_steps: int,
    gpus: int,
    node_selector: dict,
    tolerations: list,
    checkpoint_selection: str,
    production_model_name: str,
    gate_tolerance: float,
    run_id: str,
    tracking_uri: str,
    report: Output[Markdown],
    generation_cache: str = "",
    training_backend: str = "pod",
    training_nodes: int = 1,
    checkpoint_root: str = "",
    workspace: bool = False,
):
    """Check every parameter and service the run needs; fail with all problems (secrets are mounted as env)."""
    params = {k: v for k, v in locals().items() if k not in ("run_id", "tracking_uri", "report")}
    # workspace: the pipeline was compiled with a KFP workspace (training checkpoints outlive the pod)
    params["mlflow_tracking_uri"] = tracking_uri
    from labpipe.errors import clean_user_errors
    from labpipe.preflight import PreflightConfig, run_preflight

    clean_user_errors()  # the problems, one line each (and for `labpipe run`, as the user's to fix): no traceback
    meta = run_preflight(PreflightConfig(params=params, out=report.path, run_id=run_id, tracking_uri=tracking_uri))
    report.metadata.update({k: v for k, v in meta.items() if k != "passed"})

"""Per-task cluster policy of the LAB pipeline: one row per task (resource class, retries, caching and why,
secrets, GPUs), applied by `lab_pipeline._apply`, so each stage's wiring is the component call and one line.

Plain data (no kfp): tests and docs read it too.

Fixed-name cluster configuration (every task, not pipeline parameters) — the one place that says why:
- `labpipe-ca` (secret, mounted at /etc/labpipe/ca) and `odh-trusted-ca-bundle` (OpenShift AI's injected CA
  ConfigMap), `labpipe-network` (ConfigMap with HTTP(S)_PROXY / NO_PROXY), `labpipe-mlflow` (secret with the
  MLFLOW_TRACKING_* variables): all optional. KFP 2.17 cannot set an env value from a parameter
  (kubeflow/pipelines#10111), and a secret name given as a parameter fails inside dsl.ParallelFor on OpenShift
  (kubeflow/pipelines#13078), so cluster-wide settings have fixed names (templates: manifests/secrets/).
- The teacher's secret is always `labpipe-teacher` (labpipe.runconfig.TEACHER_SECRET): generation runs inside
  the ParallelFor (#13078), and one secret means one thing for every task that reads the teacher.
- The data connection is always `labpipe-s3` (labpipe.runconfig.S3_SECRET) for the same reason: the generation
  shards read it inside the loop, and every other task (seeds, critique, training jobs, evaluation, publish)
  reads the same one.

Retries: stages that talk to endpoints or run for hours, all of which resume (every paid reply and every
training checkpoint is kept), get TASK_RETRIES more tries with exponential backoff. KFP 2.17 retries whatever
failed; a retried attempt after a deterministic failure ends at once with the same problems
(labpipe.retry_guard), so only transient failures cost a real retry.

Caching: every task takes the pipeline run id and logs to that run's MLflow lineage, so a KFP cache hit would
leave the run's lineage without the stage; on top of that, each row's reason. Nothing is cached: a weekly rerun
is cheap where nothing changed because of the "nothing to do" branch and the content-keyed generation cache.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskPolicy:
    resources: (
        str  # resource class: light | generation | training | evaluation | planned (the SFT plan's output)
    )
    cache_why: str  # why it is (not) cached
    retry: bool = False
    cache: bool = False
    secrets: tuple[str, ...] = ()  # in mount order: s3 | teacher | judge | git
    gpus: str = ""  # "" | planned (the SFT plan's GPUs and node selector) | evaluation (evaluation_gpus)


_LIGHT = "light"
TASKS: dict[str, TaskPolicy] = {
    "preflight": TaskPolicy(
        _LIGHT,
        "reads external state: git, endpoints, S3, the MLflow registry",
        secrets=("s3", "teacher", "judge", "git"),
    ),
    # the teacher/judge secrets only name the models for the fingerprint (endpoint and model keys)
    "taxonomy-diff": TaskPolicy(
        _LIGHT, "reads git refs and the production model in the registry", secrets=("teacher", "judge", "git")
    ),
    "nothing-to-do": TaskPolicy(_LIGHT, "writes the run's report to MLflow (side effect)"),
    "seed-extraction": TaskPolicy(
        _LIGHT,
        "fetches document repositories and the base model's tokenizer (external state)",
        secrets=("s3", "git"),
    ),
    "synthetic-generation": TaskPolicy(
        "generation",
        "calls the teacher endpoint (external, paid; its own cache handles reuse)",
        retry=True,
        secrets=("s3", "teacher"),
    ),
    "critique-filter": TaskPolicy(
        "generation", "calls the judge endpoint (external)", retry=True, secrets=("s3", "judge")
    ),
    "knowledge-sft": TaskPolicy(
        "planned",
        "reads base_model from a URI whose content may change; logs to MLflow",
        retry=True,
        secrets=("s3",),
        gpus="planned",
    ),
    "skill-sft": TaskPolicy(
        "planned",
        "logs training runs to MLflow; its input comes from an uncached task anyway",
        retry=True,
        secrets=("s3",),
        gpus="planned",
    ),
    "sft-resources": TaskPolicy(
        _LIGHT, "milliseconds of arithmetic on the parameters: a cache lookup would cost more"
    ),
    "mt-bench-eval": TaskPolicy(
        "evaluation",
        "calls the judge and reads the production model's score from the registry",
        retry=True,
        secrets=("s3", "judge"),
    ),
    "mt-bench-eval-gpu": TaskPolicy(
        "evaluation",
        "the same, on GPUs (evaluation_engine=vllm)",
        retry=True,
        secrets=("s3", "judge"),
        gpus="evaluation",
    ),
    "publish-model": TaskPolicy(
        _LIGHT, "registers a model version and moves the production alias (side effect)"
    ),
    "run-report": TaskPolicy(
        _LIGHT, "renders the run's MLflow record into a page and logs it there (reads and writes MLflow)"
    ),
    "finalize-run": TaskPolicy(
        _LIGHT, "closes the run's MLflow parent run with the run's real status (side effect)"
    ),
}

# task -> (cache enabled, why): the caching column alone
CACHING = {name: (policy.cache, policy.cache_why) for name, policy in TASKS.items()}

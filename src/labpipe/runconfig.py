"""The run configuration: every parameter of the LAB pipeline, with its type, default and description.

This is the one place a new pipeline parameter goes. The pipeline's signature is generated from it
(pipelines/lab_pipeline.py: `signature(RunConfig)` set on the pipeline function before `dsl.pipeline`; KFP
2.17 reads `inspect.signature`), the compiled parameters' descriptions come from it (the KFP and OpenShift AI
dashboards show them), `--param KEY=VALUE` is parsed by its types (labpipe.commands.params), and preflight
builds the stages' typed configs from it (labpipe.preflight). The README's Configuration table says the same
at length. The library never imports kfp: the values of a RunConfig are plain values on the CLI and KFP's
pipeline channels while the pipeline is being compiled.

Fixed when compiling, not per run (KFP stores them as literals in the IR): LABPIPE_GENERATION_PARALLELISM
(ParallelFor's parallelism), LABPIPE_RETRY_BACKOFF (the first retry backoff), LABPIPE_WORKSPACE_SIZE (the KFP
workspace) and the pinned images (the training image is the default of `training_image`): see
pipelines/lab_pipeline.py.

Secrets: the teacher's secret is always `labpipe-teacher` (TEACHER_SECRET), a fixed name like the CA, proxy
and MLflow ones, because generation fans out in a dsl.ParallelFor where a secret name given as a parameter
fails (kubeflow/pipelines#13078); every task that reads the teacher (preflight, the diff's fingerprint,
generation) reads that one secret. The data connection is `labpipe-s3` (S3_SECRET) for the same reason: the
generation shards read it inside the loop, and every other task reads the same one, so one secret means one
thing. `judge_secret` and `taxonomy_secret` are parameters (no task in a loop reads them).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any

REQUIRED: Any = MISSING
TEACHER_SECRET = "labpipe-teacher"  # fixed name (see above): preflight, the diff and generation read it
S3_SECRET = "labpipe-s3"  # fixed name (see above): the data connection every task reads, in the loop as well
PARAMETER_TYPES = (str, int, float, bool, dict, list)


def _param(default: Any, description: str) -> Any:
    meta = {"description": description}
    if default is REQUIRED:
        return field(metadata=meta)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """One run of the LAB pipeline (weekly defaults: base=production, scope=taxonomy)."""

    taxonomy: str = _param(REQUIRED, "git URL or path of the taxonomy repository (required)")
    base_model: str = _param(
        REQUIRED, "model to fine-tune: s3://… or a path; its tokenizer budgets document chunks (required)"
    )
    base: str = _param(
        "production",
        "diff base: production (the taxonomy commit of production_model_name@production), a ref, or empty",
    )
    taxonomy_ref: str = _param("", "branch or commit to check out (empty: the default branch / work tree)")
    teacher: str = _param(
        "", "teacher endpoint (…/v1, comma-separated replicas) or model dir; empty: from the teacher secret"
    )
    teacher_model: str = _param("", "model name at the teacher endpoint; empty: from the teacher secret")
    judge: str = _param("", "judge endpoint (…/v1) or model dir; empty: from the judge secret")
    judge_model: str = _param("", "model name at the judge endpoint; empty: from the judge secret")
    judge_secret: str = _param(
        "labpipe-judge", "Kubernetes secret with keys endpoint, model, api_key for the judge"
    )
    chunk_tokens: int = _param(1000, "document chunk size in base-model tokens")
    generation_gate: bool = _param(
        True, "run LAB's question filter during generation (no answer is paid for a rejected question)"
    )
    concurrency: int = _param(32, "teacher requests in flight")
    critique_profile: str = _param(
        "lab", "lab (LAB's thresholds) or smoke (scores recorded, never dropped on)"
    )
    samples_per_skill_leaf: int = _param(30, "LAB's skills sampling per leaf")
    seed: int = _param(42, "data mixing seed")
    training_preset: str = _param("lab", "lab (LAB's phases) or smoke (a few steps)")
    max_steps: int = _param(0, "cap on optimizer steps per phase (0: from the preset)")
    gpus: int = _param(1, "GPUs per training node (one process each, FSDP)")
    node_selector: dict = _param({}, "training pods' node selector (JSON object)")
    tolerations: list = _param([], "training pods' tolerations (JSON list)")
    questions: str = _param(
        "", "MT-Bench data: FastChat-layout folder, file, s3:// or URL (empty: the evaluation image's copy)"
    )
    max_questions: int = _param(0, "cap on MT-Bench questions (0: all 80)")
    max_new_tokens: int = _param(1024, "answer length of the model under test")
    checkpoint_selection: str = _param(
        "last", "last (the final model) or best (score every kept checkpoint, gate the best)"
    )
    production_model_name: str = _param(
        "labpipe-model", "registered model the gate compares with and publishes to"
    )
    gate_tolerance: float = _param(
        0.0, "how far below base/production the candidate may score and still be published"
    )
    mlflow_tracking_uri: str = _param(
        "", "MLflow server; empty: MLFLOW_TRACKING_URI from the labpipe-mlflow secret"
    )
    scope: str = _param(
        "taxonomy", "taxonomy (training sets cover every leaf) or changed (only the changed leaves)"
    )
    force: bool = _param(False, "retrain even when nothing changed since production")
    taxonomy_secret: str = _param(
        "labpipe-taxonomy-git", "secret with GIT_USERNAME / GIT_PASSWORD for a private taxonomy"
    )
    light_cpu_request: str = _param(
        "500m", "CPU request of the light tasks (preflight, diff, seeds, publish)"
    )
    light_cpu_limit: str = _param("2", "CPU limit of the light tasks")
    light_memory_request: str = _param("1Gi", "memory request of the light tasks")
    light_memory_limit: str = _param("4Gi", "memory limit of the light tasks")
    generation_cpu_request: str = _param("2", "CPU request of a generation pod")
    generation_cpu_limit: str = _param("4", "CPU limit of a generation pod")
    generation_memory_request: str = _param("4Gi", "memory request of a generation pod")
    generation_memory_limit: str = _param("8Gi", "memory limit of a generation pod")
    training_cpu_request: str = _param("8", "CPU request of a training pod")
    training_cpu_limit: str = _param("16", "CPU limit of a training pod")
    training_memory_request: str = _param("64Gi", "memory request of a training pod")
    training_memory_limit: str = _param("128Gi", "memory limit of a training pod")
    evaluation_cpu_request: str = _param("4", "CPU request of the evaluation pod")
    evaluation_cpu_limit: str = _param("8", "CPU limit of the evaluation pod")
    evaluation_memory_request: str = _param("16Gi", "memory request of the evaluation pod")
    evaluation_memory_limit: str = _param("32Gi", "memory limit of the evaluation pod")
    generation_cache: str = _param(
        "", "shared teacher/judge reply cache (s3:// on a cluster; empty: local; off: none)"
    )
    model_registry: str = _param(
        "", "also register the published model in this Kubeflow Model Registry (REST URL)"
    )
    generation_shards: int = _param(1, "generation pods, one per shard of the seed records")
    request_timeout_s: float = _param(120.0, "seconds per teacher/judge HTTP attempt")
    max_retries: int = _param(6, "retries of 429/5xx/timeouts per teacher/judge request")
    schema_retries: int = _param(2, "re-asks of a teacher/judge reply that is not JSON or breaks its step's schema")
    response_format: str = _param(
        "auto", "structured output: auto (probe), json_schema, json_object or prompt"
    )
    training_nodes: int = _param(1, "training nodes (more than 1: a Kubeflow Trainer TrainJob)")
    training_backend: str = _param("pod", "pod, trainjob or pytorchjob")
    training_runtime: str = _param("torch-distributed", "the ClusterTrainingRuntime a TrainJob runs on")
    checkpoint_root: str = _param(
        "",
        "durable training checkpoints (s3://…; required for TrainJobs); empty: the KFP workspace or LABPIPE_CACHE",
    )
    training_image: str = _param(
        "",
        "the TrainJob / PyTorchJob image (pinned at compile time: the pushed digest after build-images.sh --push)",
    )
    queue_name: str = _param(
        "", "Kueue LocalQueue for training jobs (label kueue.x-k8s.io/queue-name); empty: none"
    )
    training_deadline_minutes: float = _param(
        0.0, "a training job still running after this many minutes fails and is deleted; 0: no deadline"
    )
    max_failed_share: float = _param(
        0.02,
        "share of teacher/judge requests per stage that may fail for good (reported); above it the stage fails",
    )
    judge_attempts: int = _param(3, "tries per MT-Bench judgment before it is excluded")
    context_length: int = _param(
        0, "the teacher's and judge's context window in tokens; 0: as GET /v1/models reports it"
    )
    evaluation_engine: str = _param(
        "hf", "what answers MT-Bench for the models under test: hf (in the task), vllm (GPUs), llamacpp (CPU)"
    )
    evaluation_gpus: int = _param(
        1, "GPUs of the evaluation task when evaluation_engine=vllm (tensor parallel over them)"
    )
    serve: str = _param(
        "",
        "a KServe InferenceService name: the published model is served there (vLLM) and checked with one chat; empty: off",
    )
    teacher_revision: str = _param(
        "",
        "what the teacher's served weights are (a commit, a digest): part of the reply cache's key; empty: what GET /v1/models reports",
    )
    judge_revision: str = _param(
        "",
        "what the judge's served weights are (a commit, a digest): part of the reply cache's key; empty: what GET /v1/models reports",
    )

    def resources(self, kind: str) -> tuple:
        """(cpu_request, cpu_limit, memory_request, memory_limit) of a resource class: light, generation,
        training or evaluation (the `<kind>_cpu_request` … parameters)."""
        return tuple(
            getattr(self, f"{kind}_{k}")
            for k in ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
        )


def _shared(name: str, default: Any = None) -> Any:
    """A review parameter that means what the lab pipeline's parameter of that name means."""
    described = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    if default is None:
        default = (
            REQUIRED
            if described.default is MISSING and described.default_factory is MISSING
            else (described.default)
        )
    return _param(default, described.metadata["description"])


@dataclass(frozen=True)
class ReviewConfig:
    """One run of the review pipeline (pipelines/review_pipeline.py): `labpipe review` on the cluster."""

    taxonomy: str = _shared("taxonomy")
    ref: str = _param(REQUIRED, "the contribution's branch or commit to review (required)")
    base: str = _shared("base")
    base_model: str = _param(
        "", "the model whose tokenizer budgets document chunks; empty: the production model's"
    )
    teacher: str = _shared("teacher")
    teacher_model: str = _shared("teacher_model")
    teacher_secret: str = _param(
        TEACHER_SECRET,
        "Kubernetes secret with keys endpoint, model, api_key for the "
        "teacher (the review's one task reads it; the lab pipeline always reads "
        "labpipe-teacher)",
    )
    judge: str = _shared("judge")
    judge_model: str = _shared("judge_model")
    judge_secret: str = _shared("judge_secret")
    s3_secret: str = _param(
        S3_SECRET,
        "OpenShift AI data connection (AWS_* keys) for s3:// locations (the review's one task reads it; the lab "
        "pipeline always reads labpipe-s3)",
    )
    taxonomy_secret: str = _shared("taxonomy_secret")
    sample_size: int = _param(2, "samples generated per changed leaf")
    generation_gate: bool = _shared("generation_gate")
    critique_profile: str = _shared("critique_profile")
    chunk_tokens: int = _shared("chunk_tokens")
    seed: int = _shared("seed")
    generation_cache: str = _shared("generation_cache")
    response_format: str = _shared("response_format")
    questions: str = _shared("questions")
    known_threshold: float = _param(
        8.0, "a leaf whose questions the production model already answers this well is reported as known"
    )
    known_model: str = _param(
        "", "the production model's endpoint (…/v1); empty: the registry's model, in the task"
    )
    known_model_name: str = _param("", "model name at known_model")
    production_model_name: str = _shared("production_model_name")
    mlflow_tracking_uri: str = _shared("mlflow_tracking_uri")
    cpu_request: str = _param("2", "CPU request of the review task")
    cpu_limit: str = _param("4", "CPU limit of the review task")
    memory_request: str = _param("4Gi", "memory request of the review task")
    memory_limit: str = _param("8Gi", "memory limit of the review task")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type
    default: Any  # inspect.Parameter.empty when required
    description: str

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def parameters(cls: type = RunConfig) -> list[Parameter]:
    """The parameters of a run configuration class, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = inspect.Parameter.empty
        found.append(Parameter(f.name, hints[f.name], default, f.metadata.get("description", "")))
    return found


def from_params(params: Mapping[str, Any], cls: type = RunConfig) -> Any:
    """A run configuration from parameters by name (as a run received them): defaults for those not given,
    "" for a required one not given (preflight says it is required), other names ignored."""
    names = {p.name: p for p in parameters(cls)}
    given = {k: v for k, v in params.items() if k in names}
    missing = {n: "" for n, p in names.items() if p.required and n not in given}
    return cls(**missing, **given)


def descriptions(cls: type = RunConfig) -> dict[str, str]:
    return {p.name: p.description for p in parameters(cls)}


def signature(
    cls: type = RunConfig, defaults: dict[str, Any] | None = None, only: tuple[str, ...] = ()
) -> inspect.Signature:
    """A function signature with one keyword parameter per field (for the pipeline function: KFP reads the
    signature); `defaults` replaces some defaults (values fixed when compiling, such as the training image);
    `only`: just these fields (a pipeline that runs part of the stages), the others keep their defaults."""
    defaults = defaults or {}
    return inspect.Signature(
        [
            inspect.Parameter(
                p.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=p.type,
                default=defaults.get(p.name, p.default),
            )
            for p in parameters(cls)
            if not only or p.name in only
        ]
    )

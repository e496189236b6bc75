"""`run_sft_task(SftTaskConfig) -> dict`: the SFT pipeline task as one library call.

Decides where one phase trains and returns the Model artifact metadata:
- `training_backend=pod` (default), `training_nodes=1`: in this pod; `gpus > 1` starts one process per GPU
  (launch.py, FSDP via the shipped accelerate config).
- `training_backend=trainjob` (also chosen for `pod` with `training_nodes > 1`) or `pytorchjob`: `labpipe train`
  runs as a Kubeflow Trainer v2 TrainJob (or a legacy PyTorchJob) on `training_nodes` x `gpus` (jobs.py). Data,
  base model and output travel through S3 under the durable checkpoint location (`<location>/handoff/`); this
  task uploads its inputs there, waits for the job, and downloads the final model into the Model artifact.

Checkpoints go to the durable location of the run and phase (checkpoints.default_location), never into the
Model artifact: the artifact holds model/ and training_summary.json only, and the summary names the location.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from labpipe import storage
from labpipe.errors import Problem, UserError
from labpipe.runs import tracking
from labpipe.training import checkpoints, jobs
from labpipe.training.config import TrainingConfig


@dataclass
class SftTaskConfig:
    phase: str
    base_model: str  # local path or s3:// (skills: the knowledge task's Model artifact)
    data: str  # messages JSONL
    out: str  # the Model artifact's path
    preset: str = "smoke"
    max_steps: int = 0
    run_id: str = ""
    tracking_uri: str = ""
    gpus: int = 1  # per node
    training_nodes: int = 1
    training_backend: str = "pod"  # pod | trainjob | pytorchjob
    training_runtime: str = "torch-distributed"  # ClusterTrainingRuntime of the TrainJob
    checkpoint_root: str = ""  # s3:// prefix or directory; "" = the KFP workspace when mounted, else LABPIPE_CACHE
    workspace: str = ""  # the run's KFP workspace path, when the pipeline was compiled with one
    image: str = ""  # the training image (jobs)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    s3_secret: str = ""
    ca_bundle: str = ""  # secret with ca.crt (labpipe-ca) mounted into the job's pods
    trusted_ca: str = ""  # the platform's CA ConfigMap (odh-trusted-ca-bundle), mounted optionally into the job
    namespace: str = ""  # "" = the pod's own namespace
    service_account: str = ""  # the job pods' service account; "" = this pod's own (jobs.current_service_account)
    queue_name: str = ""  # Kueue LocalQueue for the job ("" = none)
    deadline_minutes: float = 0  # the job fails (and is deleted) after this long; 0 = no deadline
    unschedulable_minutes: float = 10  # pods unschedulable this long fail the job with the scheduler's reason


def scale_problems(training_backend: str, training_nodes: int, gpus: int, checkpoint_root: str) -> list[Problem]:
    """What cannot work in these training settings (also checked by preflight, before anything runs)."""
    problems = []
    if training_backend not in jobs.BACKENDS:
        problems.append(jobs.unknown_backend(training_backend))
    if training_nodes < 1:
        problems.append(Problem("training_nodes", "value", f"{training_nodes} nodes", "use 1 or more",
                                field="training_nodes"))  # fmt: skip
    if gpus < 0:
        problems.append(Problem("gpus", "value", f"{gpus} GPUs", "use 0 or more", field="gpus"))
    backend = backend_for(training_backend, training_nodes)
    if backend in ("trainjob", "pytorchjob") and not storage.is_s3(checkpoint_root):
        problems.append(Problem(
            "checkpoint_root", "s3-required",
            f"training_backend={backend} needs an s3:// checkpoint_root (got {checkpoint_root!r}): the job's "
            "nodes read the data and base model and write checkpoints and the model there",
            "pass checkpoint_root=s3://bucket/prefix (the S3 secret of the pipeline is mounted into the job)",
            field="checkpoint_root",
        ))  # fmt: skip
    return problems


# What the SFT task's own pod needs when it only submits a job and follows its log (uploads inputs to S3 and
# downloads the final model by streaming): no GPU, no GPU node, small requests.
LAUNCHER_RESOURCES = {"cpu_request": "500m", "cpu_limit": "2", "memory_request": "1Gi", "memory_limit": "4Gi"}


def launcher_resources(training_backend: str, training_nodes: int, gpus: int, cpu_request: str, cpu_limit: str,
                       memory_request: str, memory_limit: str, node_selector: dict) -> dict[str, Any]:
    """The SFT task pod's GPUs, CPU, memory and node selector: the training ones when it trains in its own pod,
    LAUNCHER_RESOURCES, 0 GPUs and no node selector when a TrainJob / PyTorchJob does the training."""
    if backend_for(training_backend, training_nodes) == "pod":
        return {"gpus": gpus, "cpu_request": cpu_request, "cpu_limit": cpu_limit, "memory_request": memory_request,
                "memory_limit": memory_limit, "node_selector": dict(node_selector or {})}  # fmt: skip
    return {"gpus": 0, **LAUNCHER_RESOURCES, "node_selector": {}}


def backend_for(training_backend: str, training_nodes: int) -> str:
    """`pod` with several nodes means a TrainJob."""
    return "trainjob" if training_backend == "pod" and training_nodes > 1 else training_backend


def job_problems(queue_name: str, deadline_minutes: float) -> list[Problem]:
    """What cannot work in the job settings: a Kueue queue name that is no DNS label, a negative deadline."""
    import re

    problems = []
    if queue_name and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", queue_name):
        problems.append(Problem("queue_name", "dns-label", f"queue_name {queue_name!r} is not a LocalQueue name",
                                "pass the name of a LocalQueue of the project (`oc get localqueues`)",
                                field="queue_name"))  # fmt: skip
    if deadline_minutes < 0:
        problems.append(Problem("training_deadline_minutes", "value", f"{deadline_minutes} minutes",
                                "use 0 (no deadline) or more", field="training_deadline_minutes"))  # fmt: skip
    return problems


def check(cfg: SftTaskConfig) -> str:
    """The backend to use; UserError for settings that cannot work."""
    problems = scale_problems(cfg.training_backend, cfg.training_nodes, cfg.gpus, cfg.checkpoint_root)
    problems += job_problems(cfg.queue_name, cfg.deadline_minutes)
    if problems:
        raise UserError(problems)
    return backend_for(cfg.training_backend, cfg.training_nodes)


def _checkpoint_key(cfg: SftTaskConfig) -> str:
    """The run id; but with neither checkpoint_root nor a workspace (a laptop's `labpipe run`, keeping them under
    LABPIPE_CACHE) a key of what determines the training, so that rerunning the same command resumes it."""
    from pathlib import Path

    if cfg.checkpoint_root or (cfg.workspace and Path(cfg.workspace).is_dir()):
        return cfg.run_id
    import hashlib

    from labpipe.llm.cache import local_model_identity

    base = Path(cfg.base_model)
    if (base / checkpoints.MODEL / "config.json").is_file():  # the knowledge task's Model artifact
        base = base / checkpoints.MODEL
    data = cfg.data if storage.is_s3(cfg.data) else storage.sha256_file(cfg.data)
    model = cfg.base_model if storage.is_s3(cfg.base_model) else local_model_identity(str(base))
    inputs = [cfg.phase, model, data, cfg.preset, cfg.max_steps, cfg.gpus, cfg.training_nodes]
    return "inputs-" + hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:16]


def _unless_finished(durable: str) -> str:
    """A location keyed by inputs resumes an interrupted training; one whose last checkpoint is the final step
    (an earlier run finished) is cleared, so a new run trains as it always did."""
    import shutil

    latest = checkpoints.latest_checkpoint(durable)
    if latest is not None:
        try:
            state = json.loads((latest / "trainer_state.json").read_text())
            finished = int(state.get("global_step", 0)) >= int(state.get("max_steps") or 0) > 0
        except (OSError, ValueError, TypeError):
            finished = False
        if finished:
            shutil.rmtree(durable, ignore_errors=True)
    return durable


def run_sft_task(cfg: SftTaskConfig) -> dict[str, Any]:
    from labpipe.training.passthrough import skip_empty_knowledge_phase
    from labpipe.training.stage import run_training

    backend = check(cfg)
    key = _checkpoint_key(cfg)
    durable = checkpoints.default_location(cfg.checkpoint_root, key, cfg.phase, workspace=cfg.workspace)
    if key != cfg.run_id:
        _unless_finished(durable)
    training = TrainingConfig(
        phase=cfg.phase,
        base_model=cfg.base_model,
        data=cfg.data,
        out=cfg.out,
        preset=cfg.preset,
        overrides={"max_steps": cfg.max_steps} if cfg.max_steps > 0 else {},
        run_id=cfg.run_id,
        tracking_uri=cfg.tracking_uri,
        checkpoint_dir=durable,
        nproc_per_node=cfg.gpus if cfg.gpus > 1 else 0,
    )
    skipped = skip_empty_knowledge_phase(training)  # a skills-only change: the base model passes through
    if skipped:
        return skipped
    if backend == "pod":
        return run_training(training)
    # the batch arithmetic of the whole job, before anything is uploaded or submitted
    where = training.config_file or training.preset
    training.load_phase().gradient_accumulation(cfg.training_nodes * max(cfg.gpus, 1), where=where)
    return _run_as_job(cfg, training, durable, backend)


def _run_as_job(cfg: SftTaskConfig, training: TrainingConfig, durable: str, backend: str) -> dict[str, Any]:
    from labpipe.models.loading import resolve_model_dir

    handoff = storage.join(durable, "handoff")
    out_uri = storage.join(handoff, "output")
    summary_uri = storage.join(out_uri, checkpoints.SUMMARY)
    if not storage.exists(summary_uri):  # else: a retried task whose job had finished; only the download is left
        data_uri = cfg.data
        if not storage.is_s3(data_uri):
            data_uri = storage.join(handoff, "data.jsonl")
            storage.upload_file(cfg.data, data_uri)
        base_uri = cfg.base_model
        if not storage.is_s3(base_uri):
            base_uri = storage.join(handoff, "base")
            storage.upload_dir(resolve_model_dir(cfg.base_model), base_uri)
        remote = replace(training, base_model=base_uri, data=data_uri, out=out_uri, nproc_per_node=0)
        from labpipe.training.stage import train_argv

        jobs.run_job(
            jobs.JobSpec(
                name=jobs.job_name(cfg.run_id or "local", cfg.phase),
                namespace=cfg.namespace or jobs.current_namespace(),
                image=cfg.image,
                train_argv=train_argv(remote),
                nodes=cfg.training_nodes,
                gpus_per_node=cfg.gpus,
                backend=backend,
                runtime=cfg.training_runtime,
                node_selector=dict(cfg.node_selector or {}),
                tolerations=list(cfg.tolerations or []),
                s3_secret=cfg.s3_secret,
                ca_bundle=cfg.ca_bundle,
                trusted_ca=cfg.trusted_ca,
                labels={"app.kubernetes.io/part-of": "labpipe", "labpipe.io/phase": cfg.phase},
                service_account=cfg.service_account or jobs.current_service_account(),
                queue_name=cfg.queue_name,
                deadline_s=cfg.deadline_minutes * 60,
                unschedulable_s=cfg.unschedulable_minutes * 60,
                env=tracking.dsp_run_env(),  # DSP's MLflow run of this task, when it gave one
            )
        )
    with storage.atomic_dir(cfg.out) as tmp:  # the slim Model artifact: model/ and the summary
        storage.download_dir(storage.join(out_uri, checkpoints.MODEL), tmp / checkpoints.MODEL)
        summary = json.loads(storage.read_text(summary_uri))
        summary["backend"] = backend
        summary["nodes"] = cfg.training_nodes
        (tmp / checkpoints.SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary

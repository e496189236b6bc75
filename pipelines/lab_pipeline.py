"""The LAB pipeline: preflight -> taxonomy diff -> [nothing to do | seed extraction -> synthetic generation
-> critique filtering -> knowledge SFT -> skill SFT -> MT-Bench evaluation -> (gate) publish].

Only wiring lives here: every step is a component from components/, each a single call into the
labpipe library. The parameters are labpipe.runconfig.RunConfig (the signature is generated from it);
cluster concerns (secrets, GPUs, tolerations, node selectors, CPU/memory, retries, caching) are one row per
task in pipelines/policy.py, applied by `_apply`; kfp.local ignores the Kubernetes ones, so the same DAG
runs on a laptop. The defaults are the weekly run's: base=production (diff against the taxonomy commit
the production model was trained from; end early when nothing changed), scope=taxonomy (train on every
leaf). `labpipe compile` writes lab_pipeline.yaml next to this file (checked in, drift-tested).
"""


import functools
import inspect
import os

from kfp import dsl, kubernetes
from kfp.dsl import pipeline_channel
from labpipe.components.critique_filter.component import critique_filter
from labpipe.components.finalize_run.component import finalize_run
from labpipe.components.images import image_for
from labpipe.components.knowledge_sft.component import knowledge_sft
from labpipe.components.mt_bench_eval.component import mt_bench_eval, mt_bench_eval_gpu
from labpipe.components.nothing_to_do.component import nothing_to_do
from labpipe.components.preflight.component import preflight
from labpipe.components.publish_model.component import publish_model
from labpipe.components.run_report.component import run_report
from labpipe.components.seed_extraction.component import seed_extraction
from labpipe.components.sft_resources.component import sft_resources
from labpipe.components.skill_sft.component import skill_sft
from labpipe.components.synthetic_generation.component import synthetic_generation
from labpipe.components.taxonomy_diff.component import taxonomy_diff
from labpipe.pipelines.policy import CACHING, TASKS

from labpipe.retry_guard import TASK_RETRIES
from labpipe.runconfig import S3_SECRET, TEACHER_SECRET, RunConfig, signature

# Secret keys -> environment variables the stages read. Which secret each task mounts, and why some names are
# fixed (the CA, proxy, MLflow and teacher secrets; the loop's S3 secret): pipelines/policy.py.
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
# Taxonomy repository credentials (optional): HTTP username and token for git, never in a URL.
GIT_SECRET_KEYS = {"GIT_USERNAME": "GIT_USERNAME", "GIT_PASSWORD": "GIT_PASSWORD"}
RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER
# Enterprise networks (labpipe.net): an optional CA bundle secret mounted as a file, and an optional ConfigMap
# with the proxy variables, on every task (fixed names: pipelines/policy.py). Templates: manifests/secrets/.
CA_SECRET, CA_MOUNT = "labpipe-ca", "/etc/labpipe/ca"
# OpenShift AI's trusted CA bundle, injected into every project (opendatahub-io/opendatahub-operator
# trustedCABundle): an optional ConfigMap with ca-bundle.crt and odh-ca-bundle.crt, added to the trust store too.
TRUSTED_CA_CONFIG, TRUSTED_CA_MOUNT = "odh-trusted-ca-bundle", "/etc/labpipe/odh-ca"
CA_FILES = ":".join((f"{CA_MOUNT}/ca.crt", f"{TRUSTED_CA_MOUNT}/ca-bundle.crt", f"{TRUSTED_CA_MOUNT}/odh-ca-bundle.crt"))
# The image of the training jobs (TrainJob / PyTorchJob): the one pinned when compiling (images.lock.json after
# `scripts/build-images.sh --push`), as the default of the `training_image` parameter, so the SFT task never reads
# a lock file baked into its own image.
TRAINING_IMAGE = image_for("training")
NETWORK_CONFIG = "labpipe-network"
PROXY_KEYS = {key: key for key in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")}
# Generation fan-out (docs/scale-out.md). Inside dsl.ParallelFor, secret names are literals
# (kubeflow/pipelines#13078; pipelines/policy.py). KFP keeps ParallelFor's parallelism as a literal in the IR,
# so it is set when compiling (LABPIPE_GENERATION_PARALLELISM), not per run.
LOOP_TEACHER_SECRET = TEACHER_SECRET  # the teacher's one secret, inside the loop and out (labpipe.runconfig)
LOOP_S3_SECRET = S3_SECRET  # the data connection's one secret, likewise
GENERATION_PARALLELISM = int(os.environ.get("LABPIPE_GENERATION_PARALLELISM", "8"))
# The MLflow server of a cluster, from the optional labpipe-mlflow secret on every task (a fixed name)
# (docs/mlflow-lineage.md); every key optional: a plain server needs only the URI,
# OpenShift AI's MLflow takes MLFLOW_TRACKING_AUTH=kubernetes-namespaced (the pod's service-account token).
MLFLOW_SECRET_KEYS = {k: k for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH",
                                     "MLFLOW_WORKSPACE")}
MLFLOW_SECRET = "labpipe-mlflow"
# Optional per-run workspace volume (kfp >= 2.15) for training checkpoints: LABPIPE_WORKSPACE_SIZE=500Gi at
# compile time (docs/training-at-scale.md). The checked-in YAML has none.
WORKSPACE_SIZE = os.environ.get("LABPIPE_WORKSPACE_SIZE", "")
PIPELINE_CONFIG = dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(size=WORKSPACE_SIZE)) if WORKSPACE_SIZE else None


# Retries (policy.py): the first backoff is fixed when compiling (LABPIPE_RETRY_BACKOFF, default 60s; tests use
# 1s): KFP stores it as a literal.
RETRY = {"num_retries": TASK_RETRIES, "backoff_duration": os.environ.get("LABPIPE_RETRY_BACKOFF", "60s"),
         "backoff_factor": 2.0, "backoff_max_duration": "1800s"}


def _resources(task: dsl.PipelineTask, cpu_request, cpu_limit, memory_request, memory_limit) -> dsl.PipelineTask:
    # Ephemeral storage: KFP 2.17 has no setter (kubeflow/pipelines#11137); see docs/weekly-retraining.md.
    task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory_request).set_memory_limit(memory_limit)
    return _consumes(task, cpu_request, cpu_limit, memory_request, memory_limit)


def _consumes(task: dsl.PipelineTask, *values) -> dsl.PipelineTask:
    """Declare parameters used in resource fields as task inputs: KFP 2.17 otherwise does not pass them into
    a dsl.If branch, and the task fails there with "Parent pipeline input argument … not found"."""
    task.register_pipeline_channels([v for v in values if isinstance(v, pipeline_channel.PipelineChannel)])
    return task


def _with_s3(task: dsl.PipelineTask, s3_secret) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_KEYS, optional=True)


def _with_git(task: dsl.PipelineTask, git_secret) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=git_secret, secret_key_to_env=GIT_SECRET_KEYS, optional=True)


def _with_endpoint(task: dsl.PipelineTask, role: str, secret) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=ENDPOINT_SECRET_KEYS[role],
                                        optional=True)


def _with_cluster_config(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """What every task gets on a cluster: the optional CA bundle, proxy settings and MLflow secret."""
    kubernetes.use_secret_as_volume(task, secret_name=CA_SECRET, mount_path=CA_MOUNT, optional=True)
    kubernetes.use_config_map_as_volume(task, config_map_name=TRUSTED_CA_CONFIG, mount_path=TRUSTED_CA_MOUNT,
                                        optional=True)
    task.set_env_variable("LABPIPE_CA_BUNDLE", CA_FILES)
    kubernetes.use_config_map_as_env(task, config_map_name=NETWORK_CONFIG, config_map_key_to_env=PROXY_KEYS,
                                     optional=True)
    return kubernetes.use_secret_as_env(task, secret_name=MLFLOW_SECRET, secret_key_to_env=MLFLOW_SECRET_KEYS,
                                        optional=True)


def _on_gpus(task: dsl.PipelineTask, gpus, node_selector, tolerations) -> dsl.PipelineTask:
    _consumes(task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus), gpus)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task


def _secret_names(cfg: RunConfig, in_loop: bool = False) -> dict:
    """The secret each role's tasks read (policy.py says why the loop's are literals)."""
    if in_loop:
        return {"s3": LOOP_S3_SECRET, "teacher": LOOP_TEACHER_SECRET}
    return {"s3": S3_SECRET, "teacher": TEACHER_SECRET, "judge": cfg.judge_secret, "git": cfg.taxonomy_secret}


def _apply(task: dsl.PipelineTask, name: str, cfg: RunConfig, *, cluster: bool = True, in_loop: bool = False,
           planned=None, display: str = "") -> dsl.PipelineTask:
    """Task `name`'s row of the policy table (policy.TASKS): its secrets, GPUs, caching, the cluster config,
    and (`cluster`: the lab pipeline; the data-only pipeline has no resource parameters) its resources and
    retries. `planned`: the SFT plan task (its GPUs, node selector and pod resources)."""
    policy = TASKS[name]
    if display:
        task.set_display_name(display)
    if policy.gpus == "planned":
        _on_gpus(task, planned.outputs["gpus"], planned.outputs["node_selector"], cfg.tolerations)
    elif policy.gpus == "evaluation":
        _on_gpus(task, cfg.evaluation_gpus, cfg.node_selector, cfg.tolerations)
    secrets = _secret_names(cfg, in_loop)
    for role in policy.secrets:
        if role == "s3":
            _with_s3(task, secrets[role])
        elif role == "git":
            _with_git(task, secrets[role])
        else:
            _with_endpoint(task, role, secrets[role])
    _with_cluster_config(task.set_caching_options(policy.cache))
    if not cluster:
        return task
    if policy.resources == "planned":
        _resources(task, *(planned.outputs[k] for k in ("cpu_request", "cpu_limit", "memory_request",
                                                          "memory_limit")))
    else:
        _resources(task, *cfg.resources(policy.resources))
    return task.set_retry(**RETRY) if policy.retry else task


def _generate_and_critique(seeds: dsl.PipelineTask, cfg: RunConfig, *, cluster: bool = True) -> dsl.PipelineTask:
    """One generation task per shard of the seed extraction's plan, then critique over all of them.

    `cluster` (the lab pipeline) also sets the resources and retries of the policy table."""
    with dsl.ParallelFor(items=seeds.outputs["Output"], parallelism=GENERATION_PARALLELISM,
                         name="generation shards") as shard:
        generated = synthetic_generation(
            seeds=seeds.outputs["seeds"], shard_plan=seeds.outputs["shard_plan"], shard=shard, teacher=cfg.teacher,
            teacher_model=cfg.teacher_model, teacher_secret=LOOP_TEACHER_SECRET, gate=cfg.generation_gate,
            concurrency=cfg.concurrency, timeout_s=cfg.request_timeout_s, max_retries=cfg.max_retries,
            schema_retries=cfg.schema_retries,
            generation_cache=cfg.generation_cache, response_format=cfg.response_format,
            max_failed_share=cfg.max_failed_share, context_length=cfg.context_length, revision=cfg.teacher_revision,
            run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri,
        )
        _apply(generated, "synthetic-generation", cfg, cluster=cluster, in_loop=True, display="3 synthetic generation")

    critique = critique_filter(
        generated=dsl.Collected(generated.outputs["generated"]), judge=cfg.judge, judge_model=cfg.judge_model,
        judge_secret=cfg.judge_secret, profile=cfg.critique_profile, samples_per_skill_leaf=cfg.samples_per_skill_leaf,
        seed=cfg.seed, timeout_s=cfg.request_timeout_s, max_retries=cfg.max_retries, schema_retries=cfg.schema_retries,
        generation_cache=cfg.generation_cache, response_format=cfg.response_format,
        max_failed_share=cfg.max_failed_share, context_length=cfg.context_length, revision=cfg.judge_revision,
        run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri,
    )
    return _apply(critique, "critique-filter", cfg, cluster=cluster, display="4 critique filtering")


def from_config(cls, only: tuple[str, ...] = (), **defaults):
    """A pipeline function taking one keyword per field of the run configuration `cls` (KFP reads the
    generated signature: kfp/dsl/component_factory.py and graph_component.py call inspect.signature, which
    honours __signature__) and calling the decorated function with one `cls` object."""
    sig = signature(cls, defaults, only)

    def decorate(body):
        @functools.wraps(body, assigned=("__module__", "__name__", "__qualname__"))
        def pipeline_func(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return body(cls(**bound.arguments))

        pipeline_func.__signature__ = sig
        pipeline_func.__doc__ = None  # KFP would read parameter descriptions from a docstring's Args
        return pipeline_func

    return decorate


# The data half's parameters: the stages it runs take nothing else (the rest of RunConfig keeps its defaults).
DATA_PARAMETERS = (
    "taxonomy", "base", "taxonomy_ref", "base_model", "teacher", "teacher_model", "judge", "judge_model",
    "judge_secret", "chunk_tokens", "generation_shards", "generation_gate", "concurrency", "request_timeout_s",
    "max_retries", "schema_retries", "critique_profile", "samples_per_skill_leaf", "seed", "mlflow_tracking_uri",
    "generation_cache", "response_format", "max_failed_share", "context_length", "teacher_revision",
    "judge_revision",
)


@dsl.pipeline(name="lab-generation", description="LAB data only: taxonomy -> seeds -> fanned-out generation -> critique")
@from_config(RunConfig, only=DATA_PARAMETERS, base="origin/main", base_model="")  # base_model: the tokenizer
def generation_pipeline(cfg: RunConfig):
    """The data half of the LAB pipeline (tests, benchmarks): the same stages, no resources or retries."""
    diff = taxonomy_diff(taxonomy=cfg.taxonomy, taxonomy_ref=cfg.taxonomy_ref, base=cfg.base,
                         run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri).set_display_name("1 taxonomy diff")
    seeds = seed_extraction(diff=diff.outputs["diff"], tokenizer=cfg.base_model, chunk_tokens=cfg.chunk_tokens,
                            shards=cfg.generation_shards, run_id=RUN_ID,
                            tracking_uri=cfg.mlflow_tracking_uri).set_display_name("2 seed extraction")
    _with_cluster_config(diff.set_caching_options(CACHING["taxonomy-diff"][0]))
    _with_cluster_config(_with_s3(seeds, S3_SECRET).set_caching_options(CACHING["seed-extraction"][0]))
    _generate_and_critique(seeds, cfg, cluster=False)


def _train_evaluate_publish(diff: dsl.PipelineTask, cfg: RunConfig) -> None:
    """Stages 2-7 and the gated publish (the branch taken when there is something to train)."""
    seeds = seed_extraction(diff=diff.outputs["diff"], tokenizer=cfg.base_model, chunk_tokens=cfg.chunk_tokens,
                            shards=cfg.generation_shards, run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri)
    _apply(seeds, "seed-extraction", cfg, display="2 seed extraction")

    # 3 synthetic generation (one task per shard; its secrets: LOOP_TEACHER_SECRET) + 4 critique filtering
    critique = _generate_and_critique(seeds, cfg)

    # the SFT pods' own resources: the training ones in pod mode, light ones (no GPU) when a job trains
    train = cfg.resources("training")
    plan = sft_resources(training_backend=cfg.training_backend, training_nodes=cfg.training_nodes, gpus=cfg.gpus,
                         training_cpu_request=train[0], training_cpu_limit=train[1],
                         training_memory_request=train[2], training_memory_limit=train[3],
                         node_selector=cfg.node_selector)
    _apply(plan, "sft-resources", cfg, display="SFT resources")

    training_scale = dict(gpus=cfg.gpus, training_nodes=cfg.training_nodes, training_backend=cfg.training_backend,
                          training_runtime=cfg.training_runtime, checkpoint_root=cfg.checkpoint_root,
                          workspace=dsl.WORKSPACE_PATH_PLACEHOLDER if WORKSPACE_SIZE else "",
                          node_selector=cfg.node_selector, tolerations=cfg.tolerations, s3_secret=S3_SECRET,
                          ca_bundle=CA_SECRET, trusted_ca=TRUSTED_CA_CONFIG, training_image=cfg.training_image,
                          queue_name=cfg.queue_name, deadline_minutes=cfg.training_deadline_minutes)
    common = dict(preset=cfg.training_preset, max_steps=cfg.max_steps, run_id=RUN_ID,
                  tracking_uri=cfg.mlflow_tracking_uri, **training_scale)
    knowledge = knowledge_sft(base_model=cfg.base_model, data=critique.outputs["knowledge_set"], **common)
    skills = skill_sft(knowledge_model=knowledge.outputs["model"], data=critique.outputs["skills_set"], **common)
    for sft_task, name, shown in ((knowledge, "knowledge-sft", "5 knowledge SFT"), (skills, "skill-sft", "6 skill SFT")):
        _apply(sft_task, name, cfg, planned=plan, display=shown)
        # the training job's pods run under this task's service account (the pipeline's runner)
        kubernetes.use_field_path_as_env(sft_task, "LABPIPE_SERVICE_ACCOUNT", "spec.serviceAccountName")

    # 7 MT-Bench: the models under test answer in the task (hf; llamacpp) or through vLLM on the task's GPUs.
    # KFP fixes a task's image and accelerator request when compiling, so each engine family is its own branch
    # (the GPU image carries vLLM); the in-task branch comes first and keeps the task names of the laptop run.
    evaluation_args = dict(
        candidate=skills.outputs["model"], base_model=cfg.base_model, judge=cfg.judge, judge_model=cfg.judge_model,
        judge_secret=cfg.judge_secret, questions=cfg.questions, max_questions=cfg.max_questions,
        max_new_tokens=cfg.max_new_tokens, checkpoint_selection=cfg.checkpoint_selection,
        production_model_name=cfg.production_model_name, tolerance=cfg.gate_tolerance, engine=cfg.evaluation_engine,
        judge_attempts=cfg.judge_attempts, context_length=cfg.context_length,
        generation_cache=cfg.generation_cache, run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri,
    )
    with dsl.If(cfg.evaluation_engine != "vllm", name="evaluation in the task"):
        _evaluate_and_gate(mt_bench_eval(**evaluation_args), "mt-bench-eval", cfg, skills=skills, diff=diff)
    with dsl.Else(name="evaluation on GPUs (vLLM)"):
        _evaluate_and_gate(mt_bench_eval_gpu(**evaluation_args), "mt-bench-eval-gpu", cfg, skills=skills, diff=diff)


def _evaluate_and_gate(evaluation, name: str, cfg: RunConfig, *, skills, diff) -> None:
    """The evaluation task's settings, then the gate: publish and report, or report only."""
    _apply(evaluation, name, cfg, display="7 MT-Bench evaluation")

    with dsl.If(evaluation.outputs["Output"] == True, name="gate passed"):  # noqa: E712 - a KFP condition
        publish = publish_model(candidate=skills.outputs["model"], decision=evaluation.outputs["decision"],
                                diff=diff.outputs["diff"], production_model_name=cfg.production_model_name,
                                run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri,
                                pipeline_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                model_registry=cfg.model_registry, serve=cfg.serve)
        _apply(publish, "publish-model", cfg, display="publish")
        report = run_report(run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri).after(publish)
        _apply(report, "run-report", cfg, display="run report (published)")
    with dsl.Else(name="gate held"):  # the run report is the last task either way
        report = run_report(run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri)
        _apply(report, "run-report", cfg, display="run report (gate held)")


@dsl.pipeline(name="lab-pipeline", description="LAB: taxonomy -> synthetic data -> phased SFT -> MT-Bench, gated",
              pipeline_config=PIPELINE_CONFIG)
@from_config(RunConfig, training_image=TRAINING_IMAGE)  # the TrainJob/PyTorchJob image (pinned when compiling)
def lab_pipeline(cfg: RunConfig):
    # the exit task: closes the MLflow parent run with the real status, whether the DAG succeeded or failed
    final = finalize_run(run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri)
    _apply(final, "finalize-run", cfg, display="finalize run")
    with dsl.ExitHandler(final, name="lab"):
        check = preflight(
            taxonomy=cfg.taxonomy, taxonomy_ref=cfg.taxonomy_ref, base=cfg.base, scope=cfg.scope,
            base_model=cfg.base_model, teacher=cfg.teacher, teacher_model=cfg.teacher_model,
            judge=cfg.judge, judge_model=cfg.judge_model,
            judge_secret=cfg.judge_secret, questions=cfg.questions, max_questions=cfg.max_questions,
            training_preset=cfg.training_preset, critique_profile=cfg.critique_profile,
            chunk_tokens=cfg.chunk_tokens, concurrency=cfg.concurrency,
            samples_per_skill_leaf=cfg.samples_per_skill_leaf, max_steps=cfg.max_steps, gpus=cfg.gpus,
            node_selector=cfg.node_selector, tolerations=cfg.tolerations,
            checkpoint_selection=cfg.checkpoint_selection, production_model_name=cfg.production_model_name,
            gate_tolerance=cfg.gate_tolerance, run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri,
            generation_cache=cfg.generation_cache, training_backend=cfg.training_backend,
            training_nodes=cfg.training_nodes, checkpoint_root=cfg.checkpoint_root, workspace=bool(WORKSPACE_SIZE),
        )
        _apply(check, "preflight", cfg, display="0 preflight")

        diff = taxonomy_diff(
            taxonomy=cfg.taxonomy, taxonomy_ref=cfg.taxonomy_ref, base=cfg.base, scope=cfg.scope,
            production_model_name=cfg.production_model_name, force=cfg.force, base_model=cfg.base_model,
            teacher=cfg.teacher, teacher_model=cfg.teacher_model, judge=cfg.judge, judge_model=cfg.judge_model,
            training_preset=cfg.training_preset, max_steps=cfg.max_steps, critique_profile=cfg.critique_profile,
            samples_per_skill_leaf=cfg.samples_per_skill_leaf, seed=cfg.seed, chunk_tokens=cfg.chunk_tokens,
            generation_gate=cfg.generation_gate, run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri,
        ).after(check)
        _apply(diff, "taxonomy-diff", cfg, display="1 taxonomy diff")

        with dsl.If(diff.outputs["Output"] == True, name="something to train"):  # noqa: E712 - a KFP condition
            _train_evaluate_publish(diff, cfg)
        with dsl.Else(name="nothing to do"):
            done = nothing_to_do(diff=diff.outputs["diff"], run_id=RUN_ID, tracking_uri=cfg.mlflow_tracking_uri)
            _apply(done, "nothing-to-do", cfg, display="nothing to do")


def pipeline_parameters() -> dict[str, object]:
    """Parameter name -> default (inspect.Parameter.empty when required)."""
    sig = inspect.signature(lab_pipeline.pipeline_func)
    return {name: p.default for name, p in sig.parameters.items()}

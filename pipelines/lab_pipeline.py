"""The LAB pipeline: preflight -> taxonomy diff -> [nothing to do | seed extraction -> synthetic generation
-> critique filtering -> knowledge SFT -> skill SFT -> MT-Bench evaluation -> (gate) publish].

Only wiring lives here: every step is a component from components/, each a single call into the
labpipe library. Cluster concerns (secrets, GPUs, tolerations, node selectors, CPU/memory, retries,
caching) are set here from pipeline parameters; kfp.local ignores the Kubernetes ones, so the same DAG
runs on a laptop. The defaults are the weekly run's: base=production (diff against the taxonomy commit
the production model was trained from; end early when nothing changed), scope=taxonomy (train on every
leaf). `labpipe compile` writes lab_pipeline.yaml next to this file (checked in, drift-tested).
"""


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

from labpipe.retry_guard import TASK_RETRIES

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
# Taxonomy repository credentials (optional): HTTP username and token for git, never in a URL.
GIT_SECRET_KEYS = {"GIT_USERNAME": "GIT_USERNAME", "GIT_PASSWORD": "GIT_PASSWORD"}
RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER
# Enterprise networks (labpipe.net): an optional CA bundle secret mounted as a file, and an optional ConfigMap
# with the proxy variables, on every task. Fixed names rather than parameters: KFP 2.17 cannot set an env value
# from a parameter (kubeflow/pipelines#10111), and parameterised secret names fail inside ParallelFor on
# OpenShift (kubeflow/pipelines#13078). Templates: manifests/secrets/ca.yaml and network.yaml.
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
# Generation fan-out (docs/scale-out.md). Inside dsl.ParallelFor, secret names are literals, not the
# teacher_secret / s3_secret parameters: kubeflow/pipelines#13078 (a secret name given as a pipeline
# parameter fails inside ParallelFor on OpenShift). KFP keeps ParallelFor's parallelism as a literal in
# the IR, so it is set when compiling (LABPIPE_GENERATION_PARALLELISM), not per run.
LOOP_TEACHER_SECRET = "labpipe-teacher"
LOOP_S3_SECRET = "labpipe-s3"
GENERATION_PARALLELISM = int(os.environ.get("LABPIPE_GENERATION_PARALLELISM", "8"))
# The MLflow server of a cluster, from the optional labpipe-mlflow secret on every task (a fixed name, as
# above) (docs/mlflow-lineage.md); every key optional: a plain server needs only the URI,
# OpenShift AI's MLflow takes MLFLOW_TRACKING_AUTH=kubernetes-namespaced (the pod's service-account token).
MLFLOW_SECRET_KEYS = {k: k for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH",
                                     "MLFLOW_WORKSPACE")}
MLFLOW_SECRET = "labpipe-mlflow"
# Optional per-run workspace volume (kfp >= 2.15) for training checkpoints: LABPIPE_WORKSPACE_SIZE=500Gi at
# compile time (docs/training-at-scale.md). The checked-in YAML has none.
WORKSPACE_SIZE = os.environ.get("LABPIPE_WORKSPACE_SIZE", "")
PIPELINE_CONFIG = dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(size=WORKSPACE_SIZE)) if WORKSPACE_SIZE else None


# Retries (KFP re-runs a failed task): stages that talk to endpoints or run for hours, all of which resume
# (every paid reply and every training checkpoint is kept), get 3 more tries with exponential backoff. KFP 2.17
# retries whatever failed; a retried attempt after a deterministic failure (a user error, requests that fail
# the same way again, an invalid evaluation) ends at once with the same problems (labpipe.retry_guard), so only
# transient failures (a lost pod, an endpoint down, 5xx storms) cost a real retry. The first backoff is fixed
# when compiling (LABPIPE_RETRY_BACKOFF, default 60s; tests use 1s): KFP stores it as a literal.
RETRY = {"num_retries": TASK_RETRIES, "backoff_duration": os.environ.get("LABPIPE_RETRY_BACKOFF", "60s"),
         "backoff_factor": 2.0, "backoff_max_duration": "1800s"}

# Caching policy, task by task (KFP's cache reuses a task's outputs when its inputs are equal). Every task
# here takes the pipeline run id and logs to that run's MLflow lineage, so a cache hit would leave the run's
# lineage without the stage; on top of that, the reasons below. Nothing is cached: a weekly rerun is cheap
# where nothing changed because of the "nothing to do" branch and the content-keyed generation cache, not
# because of KFP's cache.
CACHING = {
    "preflight": (False, "reads external state: git, endpoints, S3, the MLflow registry"),
    "taxonomy-diff": (False, "reads git refs and the production model in the registry"),
    "nothing-to-do": (False, "writes the run's report to MLflow (side effect)"),
    "seed-extraction": (False, "fetches document repositories and the base model's tokenizer (external state)"),
    "synthetic-generation": (False, "calls the teacher endpoint (external, paid; its own cache handles reuse)"),
    "critique-filter": (False, "calls the judge endpoint (external)"),
    "knowledge-sft": (False, "reads base_model from a URI whose content may change; logs to MLflow"),
    "skill-sft": (False, "logs training runs to MLflow; its input comes from an uncached task anyway"),
    "sft-resources": (False, "milliseconds of arithmetic on the parameters: a cache lookup would cost more"),
    "mt-bench-eval": (False, "calls the judge and reads the production model's score from the registry"),
    "mt-bench-eval-gpu": (False, "the same, on GPUs (evaluation_engine=vllm)"),
    "publish-model": (False, "registers a model version and moves the production alias (side effect)"),
    "run-report": (False, "renders the run's MLflow record into a page and logs it there (reads and writes MLflow)"),
    "finalize-run": (False, "closes the run's MLflow parent run with the run's real status (side effect)"),
}


def _cache(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    """What every task gets (each task of the pipeline passes through here): its caching policy and the
    cluster configuration (CA bundle, proxy, MLflow secret)."""
    return _with_cluster_config(task.set_caching_options(CACHING[name][0]))


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


def _generate_and_critique(seeds: dsl.PipelineTask, *, teacher, teacher_model, generation_gate, concurrency,
                           request_timeout_s, max_retries, judge, judge_model, judge_secret, s3_secret,
                           critique_profile, samples_per_skill_leaf, seed, tracking_uri,
                           generation_cache, response_format="auto", max_failed_share=0.02, context_length=0,
                           teacher_revision="", judge_revision="", resources=None) -> dsl.PipelineTask:
    """One generation task per shard of the seed extraction's plan, then critique over all of them.

    `resources` (the lab pipeline's CPU/memory parameters) also switches on its retries and caching policy."""
    with dsl.ParallelFor(items=seeds.outputs["Output"], parallelism=GENERATION_PARALLELISM,
                         name="generation shards") as shard:
        generated = synthetic_generation(
            seeds=seeds.outputs["seeds"], shard_plan=seeds.outputs["shard_plan"], shard=shard, teacher=teacher,
            teacher_model=teacher_model, teacher_secret=LOOP_TEACHER_SECRET, gate=generation_gate,
            concurrency=concurrency, timeout_s=request_timeout_s, max_retries=max_retries,
            generation_cache=generation_cache, response_format=response_format, max_failed_share=max_failed_share,
            context_length=context_length, revision=teacher_revision, run_id=RUN_ID, tracking_uri=tracking_uri,
        ).set_display_name("3 synthetic generation")
        _with_endpoint(_with_s3(generated, LOOP_S3_SECRET), "teacher", LOOP_TEACHER_SECRET)
        _cache(generated, "synthetic-generation")
        if resources:
            _resources(generated, *resources["generation"]).set_retry(**RETRY)

    critique = critique_filter(
        generated=dsl.Collected(generated.outputs["generated"]), judge=judge, judge_model=judge_model,
        judge_secret=judge_secret, profile=critique_profile, samples_per_skill_leaf=samples_per_skill_leaf,
        seed=seed, timeout_s=request_timeout_s, max_retries=max_retries, generation_cache=generation_cache,
        response_format=response_format, max_failed_share=max_failed_share, context_length=context_length,
        revision=judge_revision, run_id=RUN_ID, tracking_uri=tracking_uri,
    ).set_display_name("4 critique filtering")
    _with_endpoint(_with_s3(critique, s3_secret), "judge", judge_secret)
    _cache(critique, "critique-filter")
    if resources:
        _resources(critique, *resources["generation"]).set_retry(**RETRY)
    return critique


@dsl.pipeline(name="lab-generation", description="LAB data only: taxonomy -> seeds -> fanned-out generation -> critique")
def generation_pipeline(
    taxonomy: str,
    base: str = "origin/main",
    taxonomy_ref: str = "",
    tokenizer: str = "",
    teacher: str = "",
    teacher_model: str = "",
    judge: str = "",
    judge_model: str = "",
    judge_secret: str = "labpipe-judge",
    s3_secret: str = "labpipe-s3",
    chunk_tokens: int = 1000,
    generation_shards: int = 1,
    generation_gate: bool = True,
    concurrency: int = 32,
    request_timeout_s: float = 120.0,
    max_retries: int = 6,
    critique_profile: str = "lab",
    samples_per_skill_leaf: int = 30,
    seed: int = 42,
    mlflow_tracking_uri: str = "",
    generation_cache: str = "",
    response_format: str = "auto",
    max_failed_share: float = 0.02,
    context_length: int = 0,
):
    diff = taxonomy_diff(taxonomy=taxonomy, taxonomy_ref=taxonomy_ref, base=base,
                         run_id=RUN_ID, tracking_uri=mlflow_tracking_uri).set_display_name("1 taxonomy diff")
    seeds = seed_extraction(diff=diff.outputs["diff"], tokenizer=tokenizer, chunk_tokens=chunk_tokens,
                            shards=generation_shards, run_id=RUN_ID,
                            tracking_uri=mlflow_tracking_uri).set_display_name("2 seed extraction")
    _cache(diff, "taxonomy-diff")
    _with_s3(_cache(seeds, "seed-extraction"), s3_secret)
    _generate_and_critique(
        seeds, teacher=teacher, teacher_model=teacher_model, generation_gate=generation_gate, concurrency=concurrency,
        request_timeout_s=request_timeout_s, max_retries=max_retries, judge=judge, judge_model=judge_model,
        judge_secret=judge_secret, s3_secret=s3_secret, critique_profile=critique_profile,
        samples_per_skill_leaf=samples_per_skill_leaf, seed=seed, tracking_uri=mlflow_tracking_uri,
        generation_cache=generation_cache, response_format=response_format, max_failed_share=max_failed_share,
        context_length=context_length,
    )


def _train_evaluate_publish(diff, *, base_model, teacher, teacher_model, teacher_secret, judge, judge_model,
                            judge_secret, s3_secret, taxonomy_secret, chunk_tokens, generation_gate, concurrency,
                            critique_profile, samples_per_skill_leaf, seed, training_preset, max_steps, gpus,
                            node_selector, tolerations, questions, max_questions, max_new_tokens,
                            checkpoint_selection, production_model_name, gate_tolerance, mlflow_tracking_uri,
                            generation_cache, model_registry, generation_shards, request_timeout_s, max_retries,
                            response_format, training_nodes, training_backend, training_runtime, checkpoint_root,
                            resources, training_image, queue_name, training_deadline_minutes,
                            max_failed_share, judge_attempts, context_length, teacher_revision, judge_revision,
                            evaluation_engine="hf", evaluation_gpus=1, serve=""):
    """Stages 2-7 and the gated publish (the branch taken when there is something to train)."""
    seeds = seed_extraction(diff=diff.outputs["diff"], tokenizer=base_model, chunk_tokens=chunk_tokens,
                            shards=generation_shards, run_id=RUN_ID,
                            tracking_uri=mlflow_tracking_uri).set_display_name("2 seed extraction")
    _with_git(_with_s3(seeds, s3_secret), taxonomy_secret)
    _resources(_cache(seeds, "seed-extraction"), *resources["light"])

    # 3 synthetic generation (one task per shard; its secrets: LOOP_TEACHER_SECRET) + 4 critique filtering
    critique = _generate_and_critique(
        seeds, teacher=teacher, teacher_model=teacher_model, generation_gate=generation_gate, concurrency=concurrency,
        request_timeout_s=request_timeout_s, max_retries=max_retries, judge=judge, judge_model=judge_model,
        judge_secret=judge_secret, s3_secret=s3_secret, critique_profile=critique_profile,
        samples_per_skill_leaf=samples_per_skill_leaf, seed=seed, tracking_uri=mlflow_tracking_uri,
        generation_cache=generation_cache, response_format=response_format, max_failed_share=max_failed_share,
        context_length=context_length, teacher_revision=teacher_revision, judge_revision=judge_revision,
        resources=resources,
    )

    # the SFT pods' own resources: the training ones in pod mode, light ones (no GPU) when a job trains
    plan = sft_resources(training_backend=training_backend, training_nodes=training_nodes, gpus=gpus,
                         training_cpu_request=resources["training"][0], training_cpu_limit=resources["training"][1],
                         training_memory_request=resources["training"][2],
                         training_memory_limit=resources["training"][3],
                         node_selector=node_selector).set_display_name("SFT resources")
    _resources(_cache(plan, "sft-resources"), *resources["light"])
    sft_pod = [plan.outputs[k] for k in ("cpu_request", "cpu_limit", "memory_request", "memory_limit")]

    training_scale = dict(gpus=gpus, training_nodes=training_nodes, training_backend=training_backend,
                          training_runtime=training_runtime, checkpoint_root=checkpoint_root,
                          workspace=dsl.WORKSPACE_PATH_PLACEHOLDER if WORKSPACE_SIZE else "",
                          node_selector=node_selector, tolerations=tolerations, s3_secret=s3_secret,
                          ca_bundle=CA_SECRET, trusted_ca=TRUSTED_CA_CONFIG, training_image=training_image,
                          queue_name=queue_name, deadline_minutes=training_deadline_minutes)
    knowledge = knowledge_sft(
        base_model=base_model, data=critique.outputs["knowledge_set"], preset=training_preset, max_steps=max_steps,
        run_id=RUN_ID, tracking_uri=mlflow_tracking_uri, **training_scale,
    ).set_display_name("5 knowledge SFT")
    skills = skill_sft(
        knowledge_model=knowledge.outputs["model"], data=critique.outputs["skills_set"], preset=training_preset,
        max_steps=max_steps, run_id=RUN_ID, tracking_uri=mlflow_tracking_uri, **training_scale,
    ).set_display_name("6 skill SFT")
    for sft_task, name in ((knowledge, "knowledge-sft"), (skills, "skill-sft")):
        _on_gpus(_with_s3(sft_task, s3_secret), plan.outputs["gpus"], plan.outputs["node_selector"], tolerations)
        _resources(_cache(sft_task, name), *sft_pod).set_retry(**RETRY)
        # the training job's pods run under this task's service account (the pipeline's runner)
        kubernetes.use_field_path_as_env(sft_task, "LABPIPE_SERVICE_ACCOUNT", "spec.serviceAccountName")

    # 7 MT-Bench: the models under test answer in the task (hf; llamacpp) or through vLLM on the task's GPUs.
    # KFP fixes a task's image and accelerator request when compiling, so each engine family is its own branch
    # (the GPU image carries vLLM); the in-task branch comes first and keeps the task names of the laptop run.
    evaluation_args = dict(
        candidate=skills.outputs["model"], base_model=base_model, judge=judge, judge_model=judge_model,
        judge_secret=judge_secret, questions=questions, max_questions=max_questions,
        max_new_tokens=max_new_tokens, checkpoint_selection=checkpoint_selection,
        production_model_name=production_model_name, tolerance=gate_tolerance, engine=evaluation_engine,
        judge_attempts=judge_attempts, context_length=context_length,
        generation_cache=generation_cache, run_id=RUN_ID, tracking_uri=mlflow_tracking_uri,
    )
    gate_args = dict(skills=skills, diff=diff, judge_secret=judge_secret, s3_secret=s3_secret,
                     production_model_name=production_model_name, mlflow_tracking_uri=mlflow_tracking_uri,
                     model_registry=model_registry, resources=resources, serve=serve)
    with dsl.If(evaluation_engine != "vllm", name="evaluation in the task"):
        _evaluate_and_gate(mt_bench_eval(**evaluation_args), "mt-bench-eval", **gate_args)
    with dsl.Else(name="evaluation on GPUs (vLLM)"):
        evaluation = mt_bench_eval_gpu(**evaluation_args)
        _on_gpus(evaluation, evaluation_gpus, node_selector, tolerations)
        _evaluate_and_gate(evaluation, "mt-bench-eval-gpu", **gate_args)


def _evaluate_and_gate(evaluation, name, *, skills, diff, judge_secret, s3_secret, production_model_name,
                       mlflow_tracking_uri, model_registry, resources, serve):
    """The evaluation task's settings, then the gate: publish and report, or report only."""
    evaluation.set_display_name("7 MT-Bench evaluation")
    _with_endpoint(_with_s3(evaluation, s3_secret), "judge", judge_secret)
    _resources(_cache(evaluation, name), *resources["evaluation"]).set_retry(**RETRY)

    with dsl.If(evaluation.outputs["Output"] == True, name="gate passed"):  # noqa: E712 - a KFP condition
        publish = publish_model(candidate=skills.outputs["model"], decision=evaluation.outputs["decision"],
                                diff=diff.outputs["diff"], production_model_name=production_model_name,
                                run_id=RUN_ID, tracking_uri=mlflow_tracking_uri,
                                pipeline_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                model_registry=model_registry, serve=serve).set_display_name("publish")
        _resources(_cache(publish, "publish-model"), *resources["light"])
        report = run_report(run_id=RUN_ID, tracking_uri=mlflow_tracking_uri).after(publish)
        _resources(_cache(report.set_display_name("run report (published)"), "run-report"), *resources["light"])
    with dsl.Else(name="gate held"):  # the run report is the last task either way
        report = run_report(run_id=RUN_ID, tracking_uri=mlflow_tracking_uri)
        _resources(_cache(report.set_display_name("run report (gate held)"), "run-report"), *resources["light"])


@dsl.pipeline(name="lab-pipeline", description="LAB: taxonomy -> synthetic data -> phased SFT -> MT-Bench, gated",
              pipeline_config=PIPELINE_CONFIG)
def lab_pipeline(
    taxonomy: str,
    base_model: str,
    base: str = "production",
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
    scope: str = "taxonomy",
    force: bool = False,
    taxonomy_secret: str = "labpipe-taxonomy-git",
    light_cpu_request: str = "500m",
    light_cpu_limit: str = "2",
    light_memory_request: str = "1Gi",
    light_memory_limit: str = "4Gi",
    generation_cpu_request: str = "2",
    generation_cpu_limit: str = "4",
    generation_memory_request: str = "4Gi",
    generation_memory_limit: str = "8Gi",
    training_cpu_request: str = "8",
    training_cpu_limit: str = "16",
    training_memory_request: str = "64Gi",
    training_memory_limit: str = "128Gi",
    evaluation_cpu_request: str = "4",
    evaluation_cpu_limit: str = "8",
    evaluation_memory_request: str = "16Gi",
    evaluation_memory_limit: str = "32Gi",
    generation_cache: str = "",  # shared teacher/judge reply cache: an s3:// prefix on a cluster
    model_registry: str = "",
    generation_shards: int = 1,
    request_timeout_s: float = 120.0,
    max_retries: int = 6,
    response_format: str = "auto",
    training_nodes: int = 1,
    training_backend: str = "pod",
    training_runtime: str = "torch-distributed",
    checkpoint_root: str = "",
    training_image: str = TRAINING_IMAGE,  # the TrainJob/PyTorchJob image (pinned when compiling)
    queue_name: str = "",  # Kueue LocalQueue for training jobs (kueue.x-k8s.io/queue-name); "" = none
    training_deadline_minutes: float = 0.0,  # a training job still running after this long fails; 0 = none
    max_failed_share: float = 0.02,
    judge_attempts: int = 3,
    context_length: int = 0,
    evaluation_engine: str = "hf",
    evaluation_gpus: int = 1,
    serve: str = "",  # a KServe InferenceService name: the published model is served there (vLLM); "" = off
    teacher_revision: str = "",
    judge_revision: str = "",
):
    light = (light_cpu_request, light_cpu_limit, light_memory_request, light_memory_limit)
    gen_res = (generation_cpu_request, generation_cpu_limit, generation_memory_request, generation_memory_limit)
    train_res = (training_cpu_request, training_cpu_limit, training_memory_request, training_memory_limit)
    eval_res = (evaluation_cpu_request, evaluation_cpu_limit, evaluation_memory_request, evaluation_memory_limit)

    # the exit task: closes the MLflow parent run with the real status, whether the DAG succeeded or failed
    final = finalize_run(run_id=RUN_ID, tracking_uri=mlflow_tracking_uri).set_display_name("finalize run")
    _resources(_cache(final, "finalize-run"), *light)
    with dsl.ExitHandler(final, name="lab"):
        check = preflight(
            taxonomy=taxonomy, taxonomy_ref=taxonomy_ref, base=base, scope=scope, base_model=base_model, teacher=teacher,
            teacher_model=teacher_model, teacher_secret=teacher_secret, judge=judge, judge_model=judge_model,
            judge_secret=judge_secret, questions=questions, max_questions=max_questions, training_preset=training_preset,
            critique_profile=critique_profile, chunk_tokens=chunk_tokens, concurrency=concurrency,
            samples_per_skill_leaf=samples_per_skill_leaf, max_steps=max_steps, gpus=gpus, node_selector=node_selector,
            tolerations=tolerations, checkpoint_selection=checkpoint_selection,
            production_model_name=production_model_name, gate_tolerance=gate_tolerance, run_id=RUN_ID,
            tracking_uri=mlflow_tracking_uri, generation_cache=generation_cache, training_backend=training_backend,
            training_nodes=training_nodes, checkpoint_root=checkpoint_root, workspace=bool(WORKSPACE_SIZE),
        ).set_display_name("0 preflight")
        _with_git(_with_endpoint(_with_endpoint(_with_s3(check, s3_secret), "teacher", teacher_secret), "judge",
                                 judge_secret), taxonomy_secret)
        _resources(_cache(check, "preflight"), *light)

        diff = taxonomy_diff(
            taxonomy=taxonomy, taxonomy_ref=taxonomy_ref, base=base, scope=scope,
            production_model_name=production_model_name, force=force, base_model=base_model, teacher=teacher,
            teacher_model=teacher_model, judge=judge, judge_model=judge_model, training_preset=training_preset,
            max_steps=max_steps, critique_profile=critique_profile, samples_per_skill_leaf=samples_per_skill_leaf,
            seed=seed, chunk_tokens=chunk_tokens, generation_gate=generation_gate,
            run_id=RUN_ID, tracking_uri=mlflow_tracking_uri,
        ).set_display_name("1 taxonomy diff").after(check)
        # the teacher/judge secrets only name the models for the fingerprint (endpoint and model keys)
        _with_git(_with_endpoint(_with_endpoint(diff, "teacher", teacher_secret), "judge", judge_secret), taxonomy_secret)
        _resources(_cache(diff, "taxonomy-diff"), *light)

        with dsl.If(diff.outputs["Output"] == True, name="something to train"):  # noqa: E712 - a KFP condition
            _train_evaluate_publish(
                diff, base_model=base_model, teacher=teacher, teacher_model=teacher_model, teacher_secret=teacher_secret,
                judge=judge, judge_model=judge_model, judge_secret=judge_secret, s3_secret=s3_secret,
                taxonomy_secret=taxonomy_secret, chunk_tokens=chunk_tokens, generation_gate=generation_gate,
                concurrency=concurrency, critique_profile=critique_profile,
                samples_per_skill_leaf=samples_per_skill_leaf, seed=seed, training_preset=training_preset,
                max_steps=max_steps, gpus=gpus, node_selector=node_selector, tolerations=tolerations,
                questions=questions, max_questions=max_questions, max_new_tokens=max_new_tokens,
                checkpoint_selection=checkpoint_selection, production_model_name=production_model_name,
                gate_tolerance=gate_tolerance, mlflow_tracking_uri=mlflow_tracking_uri, generation_cache=generation_cache,
                model_registry=model_registry, generation_shards=generation_shards,
                request_timeout_s=request_timeout_s, max_retries=max_retries, response_format=response_format,
                training_nodes=training_nodes, training_backend=training_backend, training_runtime=training_runtime,
                checkpoint_root=checkpoint_root, max_failed_share=max_failed_share, judge_attempts=judge_attempts,
                context_length=context_length, teacher_revision=teacher_revision, judge_revision=judge_revision,
                evaluation_engine=evaluation_engine, evaluation_gpus=evaluation_gpus, serve=serve,
                resources={"light": light, "generation": gen_res, "training": train_res, "evaluation": eval_res},
                training_image=training_image, queue_name=queue_name,
                training_deadline_minutes=training_deadline_minutes,
            )
        with dsl.Else(name="nothing to do"):
            done = nothing_to_do(diff=diff.outputs["diff"], run_id=RUN_ID, tracking_uri=mlflow_tracking_uri)
            _resources(_cache(done.set_display_name("nothing to do"), "nothing-to-do"), *light)



def pipeline_parameters() -> dict[str, object]:
    """Parameter name -> default (inspect.Parameter.empty when required)."""
    sig = inspect.signature(lab_pipeline.pipeline_func)
    return {name: p.default for name, p in sig.parameters.items()}

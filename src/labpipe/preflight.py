"""Preflight: every misconfiguration of a pipeline run, found in seconds, before anything expensive runs.

`check(params)` runs every check and returns *all* problems (never the first only); each names the
pipeline parameter or Kubernetes secret at fault and the fix. Network checks have bounded timeouts and run
in parallel (after the MLflow lookup they may need), so the whole preflight ends well under a minute even
when every endpoint hangs (benchmarks/bench_preflight.py).

Composed from the stages: the parameters become the typed run configuration (labpipe.runconfig.RunConfig),
that becomes each stage's own typed config (taxonomy diff, seed extraction, generation, critique, the SFT
task, the evaluation task: `stage_configs`), and each stage's checks module says that config's problems
(labpipe.<stage>.checks: the critique profile and the training phases through their own loaders, ranges,
choices, the training scale and placement). Then, with `network`, the services: the taxonomy clones at the
ref and the base resolves; every teacher and judge replica answers the client's own probe (labpipe.llm),
lists the model and accepts the key; every s3:// location is reachable (output locations: a marker is
written and deleted); the MLflow server answers (labpipe.runs.tracking_check) and the production alias can
be read; the base model has a config and a tokenizer; the MT-Bench data is present and verified.

`network=False` runs only the checks that need nothing but the parameters (what `labpipe submit` can
check from a laptop that cannot reach in-cluster services).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.registry import production as prod
from labpipe.runconfig import S3_SECRET, TEACHER_SECRET, RunConfig, from_params
from labpipe.runs.tracking_check import bounded_requests

DEFAULT_TIMEOUT_S = 10.0
MT_BENCH_ENV = "LABPIPE_MT_BENCH_DATA"
# parameters naming locations the run writes to (checked writable when s3://)
OUTPUT_LOCATIONS = ("generation_cache", "checkpoint_root", "output_root")
# a stage config's field -> the pipeline parameter that sets it, where the names differ (problems name the
# parameter: that is what the user changes)
PARAMETER_OF = {"preset": "training_preset", "profile": "critique_profile", "tolerance": "gate_tolerance",
                "engine": "evaluation_engine", "shards": "generation_shards", "engine_gpus": "evaluation_gpus",
                "deadline_minutes": "training_deadline_minutes", "timeout_s": "request_timeout_s"}


def _p(param: str, message: str, fix: str, rule: str = "preflight", where: str = "") -> Problem:
    return Problem(where=where or f"parameter {param}", rule=rule, message=message, fix=fix, field=param)


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)  # one line per check that passed
    warnings: list[Problem] = field(default_factory=list)  # the run works, but not the way a cluster should
    seconds: float = 0.0

    def to_markdown(self) -> str:
        lines = [f"# Preflight: {'FAILED' if self.problems else 'passed'} ({self.seconds:.1f} s)", ""]
        lines += [f"- problem: {p}" for p in self.problems]
        lines += [f"- warning: {w}" for w in self.warnings]
        lines += [f"- ok: {line}" for line in self.passed]
        return "\n".join(lines) + "\n"


def _run(params: RunConfig | Mapping[str, Any]) -> RunConfig:
    return params if isinstance(params, RunConfig) else from_params(params)


# -- the stages' typed configs and their own problems ----------------------------------------------------


@dataclass(frozen=True)
class StageConfigs:
    diff: Any  # labpipe.taxonomy.stage.TaxonomyDiffConfig
    seeds: Any  # labpipe.taxonomy.stage.SeedExtractionConfig
    generation: Any  # labpipe.generation.stage.GenerationConfig
    critique: Any  # labpipe.critique.stage.CritiqueConfig
    training: Any  # labpipe.training.task.SftTaskConfig
    evaluation: Any  # labpipe.evaluation.candidate.CandidateEvalConfig


def stage_configs(run: RunConfig) -> tuple[StageConfigs, list[Problem]]:
    """Each stage's config as the pipeline builds it from `run` (paths the run creates left empty), and the
    problems of turning the parameters into them (placement that does not parse)."""
    from labpipe.critique.stage import CritiqueConfig
    from labpipe.evaluation.candidate import CandidateEvalConfig
    from labpipe.generation.stage import GenerationConfig
    from labpipe.llm.options import ClientOptions
    from labpipe.taxonomy.stage import SeedExtractionConfig, TaxonomyDiffConfig
    from labpipe.training import checks as training_checks
    from labpipe.training.task import SftTaskConfig

    selector, problems = training_checks.node_selector(run.node_selector)
    tolerations, more = training_checks.tolerations(run.tolerations)
    # the options every endpoint client shares (labpipe.llm.options: they state their own problems)
    client = dict(timeout_s=run.request_timeout_s, max_retries=run.max_retries, response_format=run.response_format,
                  context_length=run.context_length)
    configs = StageConfigs(
        diff=TaxonomyDiffConfig(taxonomy=run.taxonomy, out="", taxonomy_ref=run.taxonomy_ref, base=run.base,
                                scope=run.scope, production_model_name=run.production_model_name, force=run.force),
        seeds=SeedExtractionConfig(diff="", out="", tokenizer=run.base_model, chunk_tokens=run.chunk_tokens,
                                   shards=run.generation_shards),
        generation=GenerationConfig(seeds="", out="", gate=run.generation_gate, seed=run.seed,
                                    max_failed_share=run.max_failed_share,
                                    teacher=ClientOptions(concurrency=run.concurrency, **client)),
        critique=CritiqueConfig(generated=[], out="", profile=run.critique_profile, judge=ClientOptions(**client),
                                samples_per_skill_leaf=run.samples_per_skill_leaf, seed=run.seed,
                                max_failed_share=run.max_failed_share),
        training=SftTaskConfig(phase="knowledge", base_model=run.base_model, data="", out="",
                               preset=run.training_preset, max_steps=run.max_steps, gpus=run.gpus,
                               training_nodes=run.training_nodes, training_backend=run.training_backend,
                               training_runtime=run.training_runtime, checkpoint_root=run.checkpoint_root,
                               image=run.training_image, node_selector=selector, tolerations=tolerations,
                               s3_secret=S3_SECRET, queue_name=run.queue_name,
                               deadline_minutes=run.training_deadline_minutes),
        evaluation=CandidateEvalConfig(training_out="", decision_out="", base_model=run.base_model,
                                       questions=run.questions, max_questions=run.max_questions,
                                       max_new_tokens=run.max_new_tokens,
                                       checkpoint_selection=run.checkpoint_selection, engine=run.evaluation_engine,
                                       engine_gpus=run.evaluation_gpus, cache=run.generation_cache,
                                       production_model_name=run.production_model_name,
                                       tolerance=run.gate_tolerance, judge_attempts=run.judge_attempts),
    )
    return configs, problems + more


def stage_problems(configs: StageConfigs, serve: str = "") -> list[Problem]:
    """What each stage's config says about itself, each problem naming the pipeline parameter at fault."""
    from labpipe.critique import checks as critique_checks
    from labpipe.evaluation import checks as evaluation_checks
    from labpipe.generation import checks as generation_checks
    from labpipe.taxonomy import checks as taxonomy_checks
    from labpipe.training import checks as training_checks

    found = (taxonomy_checks.diff_problems(configs.diff) + taxonomy_checks.seed_problems(configs.seeds)
             + generation_checks.problems(configs.generation) + critique_checks.problems(configs.critique)
             + training_checks.problems(configs.training) + evaluation_checks.problems(configs.evaluation)
             + evaluation_checks.serve_problems(serve))
    named: list[Problem] = []
    for p in found:
        param = PARAMETER_OF.get(p.field, p.field)
        problem = _p(param, p.message, p.fix, rule=p.rule)
        if problem not in named:  # one setting feeding two stages (max_failed_share): said once
            named.append(problem)
    return named


# -- checks that need only the parameters ------------------------------------------------------------


def check_static(params: RunConfig | Mapping[str, Any], report: Report) -> None:
    run = _run(params)
    given = set(params) if isinstance(params, Mapping) else {f.name for f in dataclasses.fields(run)}
    configs, problems = stage_configs(run)
    report.problems += problems + stage_problems(configs, run.serve)
    for required, example in (("taxonomy", "https://git.example.com/org/taxonomy.git"),
                              ("base_model", "s3://bucket/models/granite-7b-base")):
        if required in given and not getattr(run, required):  # the CLI passes a missing one as ""
            report.problems.append(_p(required, "is required", f"pass --param {required}={example}"))
    if not report.problems:
        report.passed.append("parameters: numbers in range, presets exist, placement parses")
    _check_durable_state(run, given, bool(params.get("workspace")) if isinstance(params, Mapping) else False,
                         report)


def _check_durable_state(run: RunConfig, given: set[str], workspace: bool, report: Report) -> None:
    """In a pod, local state dies with the pod: a retried task would pay for its teacher requests again, and a
    killed training pod would start over."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return
    location = run.generation_cache
    if "generation_cache" in given and location != "off" and not location.startswith("s3://"):
        report.warnings.append(Problem(
            where="parameter generation_cache", rule="durable-state", field="generation_cache", severity="warning",
            message=f"{location or 'the default (local under LABPIPE_CACHE)'} is inside this pod: a retried or "
                    "later run resends every teacher and judge request",
            fix="pass generation_cache=s3://<bucket>/generation-cache (shared by shards, retries and later runs)"))
    root = run.checkpoint_root
    if "checkpoint_root" in given and not root.startswith("s3://") and not workspace:
        report.warnings.append(Problem(
            where="parameter checkpoint_root", rule="durable-state", field="checkpoint_root", severity="warning",
            message=f"{root or 'the default (local under LABPIPE_CACHE)'} is inside the training pod and the "
                    "pipeline has no KFP workspace: a killed or retried SFT task starts training over",
            fix="pass checkpoint_root=s3://<bucket>/checkpoints (or compile with LABPIPE_WORKSPACE_SIZE=500Gi)"))


# -- checks that reach services ------------------------------------------------------------------------


def check_taxonomy(params: RunConfig | Mapping[str, Any], report: Report, timeout: float,
                   production: prod.ProductionModel | None) -> None:
    """The taxonomy clones at the ref (blobs left out: commits and trees suffice) and the base resolves."""
    from labpipe.taxonomy import gitrepo

    run = _run(params)
    taxonomy, ref, base = run.taxonomy, run.taxonomy_ref, run.base
    if not taxonomy:
        return
    local = Path(taxonomy.removeprefix("file://"))
    with tempfile.TemporaryDirectory(prefix="labpipe-preflight-") as tmp:
        if local.is_dir() and not ref and not gitrepo.is_bare(local):
            root = local
        elif gitrepo.is_remote_url(taxonomy) or local.is_dir():
            root = Path(tmp) / "taxonomy"
            try:
                gitrepo.git("clone", "--quiet", "--no-checkout", "--filter=blob:none", taxonomy, str(root),
                            timeout=timeout * 2)
            except gitrepo.GitError as exc:
                auth = "credentials" in exc.detail or "Authentication" in exc.detail or "403" in exc.detail
                report.problems.append(_p(
                    "taxonomy", f"cannot clone {taxonomy} ({exc.detail})",
                    "put a username and token in the taxonomy git secret (keys GIT_USERNAME, GIT_PASSWORD)"
                    if auth else "check the URL and that the pipeline's pods can reach the git server",
                    rule="taxonomy-clone"))
                return
            if ref and not (gitrepo.resolve(ref, root) or gitrepo.resolve(f"origin/{ref}", root)
                            or gitrepo.ensure_commit(root, ref, timeout=timeout)):
                report.problems.append(_p("taxonomy_ref", f"'{ref}' is not a branch, tag or commit of {taxonomy}",
                                          "pass an existing ref, or leave taxonomy_ref empty for the default branch"))
                return
        else:
            report.problems.append(_p("taxonomy", f"{taxonomy} is neither a directory nor a git URL",
                                      "check the path for a typo (it must be a folder where this task runs), or "
                                      "pass the taxonomy's git URL (https://…/taxonomy.git)"))
            return
        if base == prod.PRODUCTION_BASE:
            if production is not None and production.commit:
                if gitrepo.ensure_commit(root, production.commit, timeout=timeout) is None:
                    shallow = gitrepo.is_shallow(root)
                    report.problems.append(_p(
                        "base", f"the taxonomy commit of {production.describe()} is not in "
                        + ("this shallow clone" if shallow else f"{taxonomy}"),
                        "point taxonomy at the repository production was trained from, or pass base=empty",
                        rule="production-commit"))
                    return
        elif base != "empty":
            if not gitrepo.resolve(base, root):
                report.problems.append(_p("base", f"the base ref '{base}' does not exist in {taxonomy}",
                                          "pass base=production (the default), an existing ref, or empty",
                                          rule="base-ref"))
                return
    report.passed.append(f"taxonomy: {taxonomy} at {ref or 'the default branch'}, base {base} resolves")


def check_endpoint(role: str, params: RunConfig | Mapping[str, Any], report: Report, timeout: float) -> None:
    """Every replica (`http://a/v1,http://b/v1`) answers GET /v1/models to the client's own probe, lists the
    named model, and accepts the key (from the role's secret)."""
    from labpipe.llm.endpoints import split_endpoints
    from labpipe.llm.openai_client import OpenAIChatClient
    from labpipe.llm.types import ModelSpec

    prefix = role.upper()
    run = _run(params)
    target = str(getattr(run, role) or os.environ.get(f"{prefix}_ENDPOINT", ""))
    model = str(getattr(run, f"{role}_model") or os.environ.get(f"{prefix}_MODEL", ""))
    secret = TEACHER_SECRET if role == "teacher" else run.judge_secret  # the secret the role's tasks mount
    if not target:
        report.problems.append(Problem(
            where=f"secret {secret}", rule="endpoint", field=role,
            message=f"no {role}: neither the {role} parameter nor the secret's key 'endpoint' is set",
            fix=f"pass {role}=https://…/v1 or create secret {secret} with keys endpoint, model, api_key"))
        return
    if not target.startswith(("http://", "https://")):
        check_model_dir(role, target, report)
        return
    try:
        replicas = split_endpoints(target)
    except UserError as err:
        report.problems += [_p(role, p.message, p.fix, rule="endpoint") for p in err.problems]
        return
    key_env = f"{prefix}_API_KEY" if os.environ.get(f"{prefix}_API_KEY") else "OPENAI_API_KEY"
    served: list[str] = []
    for url in replicas:  # each replica with the client's own probe: the model check the stages run at start
        spec = ModelSpec(url, model=model or None, api_key_env=key_env, timeout_s=timeout, max_retries=0)
        client = OpenAIChatClient(spec)
        try:
            # GET /v1/models lists the name, or (`transformers serve`) a one-token chat completion decides
            _status, ids = client.probe()
        except UserError as err:
            for p in err.problems:
                if p.rule == "api-key":
                    report.problems.append(Problem(
                        where=f"secret {secret}", rule="endpoint-key", field="api_key",
                        message=f"{url}/models refused the API key ({p.message.split(':')[0]})",
                        fix=f"put a valid key under 'api_key' in secret {secret}"))
                elif p.rule == "model" or p.field == "model":
                    report.problems.append(Problem(where=p.where, rule="endpoint-model", field=f"{role}_model",
                                                   message=f"{url}: {p.message}", fix=p.fix))
                else:
                    report.problems.append(_p(role, f"{url} does not answer ({p.message})",
                                              f"check the {role} URL (ends in /v1) and that the server is up",
                                              rule="endpoint"))
            return
        served = served or ids or [client.model_name]
    shown = target if len(replicas) == 1 else f"{len(replicas)} replicas ({target})"
    report.passed.append(f"{role}: {shown} serves {model or (served[0] if served else '?')}")


def check_model_dir(param: str, location: str, report: Report) -> None:
    """A Hugging Face model directory (path or s3:// prefix) with a config and a tokenizer."""
    from labpipe import storage

    try:
        if storage.is_s3(location):
            bucket, prefix = storage.split_s3(location)
            prefix = prefix.rstrip("/") + "/" if prefix else ""
            resp = storage.s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1000)
            names = {o["Key"][len(prefix):] for o in resp.get("Contents", [])}
        else:
            path = Path(location)
            names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    except Exception as exc:  # botocore raises many types; all mean "cannot list it"
        report.problems.append(_p(param, f"cannot list {location} ({str(exc).splitlines()[0][:150]})",
                                  "check the URI and the S3 data connection (secret labpipe-s3)", rule="model"))
        return
    if not names:
        report.problems.append(_p(param, f"{location} is empty or does not exist",
                                  "pass a Hugging Face model directory or s3:// prefix", rule="model"))
        return
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not names & {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json"}:
        missing.append("a tokenizer (tokenizer.json / tokenizer.model)")
    if missing:
        report.problems.append(_p(param, f"{location} has no {' and no '.join(missing)}",
                                  "upload the whole Hugging Face model directory (save_pretrained output)",
                                  rule="model"))
        return
    report.passed.append(f"{param}: {location} has a config and a tokenizer")


def check_s3_writable(param: str, location: str, report: Report) -> None:
    """Write and delete a marker object under `location`."""
    from labpipe import storage

    bucket, prefix = storage.split_s3(location)
    key = f"{prefix.rstrip('/')}/.labpipe-preflight-{uuid.uuid4().hex[:8]}".lstrip("/")
    try:
        client = storage.s3_client()
        client.put_object(Bucket=bucket, Key=key, Body=b"labpipe preflight\n")
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        report.problems.append(_p(param, f"cannot write to {location} ({str(exc).splitlines()[0][:150]})",
                                  "check the bucket exists and the S3 data connection (secret labpipe-s3) may write",
                                  rule="s3-write"))
        return
    report.passed.append(f"{param}: {location} is writable")


def check_mlflow(params: RunConfig | Mapping[str, Any], report: Report, timeout: float
                 ) -> prod.ProductionModel | None:
    """The server answers (labpipe.runs.tracking_check: unreachable, 401, 403, a missing workspace each said as
    such) and the production alias of the registered model can be read."""
    from labpipe.runs.tracking_check import FIX, require_tracking

    run = _run(params)
    uri = run.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    name = run.production_model_name
    if not uri:
        report.problems.append(_p("mlflow_tracking_uri", "no MLflow tracking server (the gate, publishing and "
                                  "base=production need one)",
                                  "pass mlflow_tracking_uri=http://labpipe-mlflow:5000 (or set MLFLOW_TRACKING_URI)",
                                  rule="mlflow"))
        return None
    if uri.startswith(("http://", "https://")):  # a local store is created by the run itself
        try:
            require_tracking(uri)
        except UserError as err:
            report.problems += [_p("mlflow_tracking_uri", p.message, p.fix.removesuffix(f"; {FIX}"), rule="mlflow")
                                for p in err.problems]  # the fix without the CLI's --tracking-uri advice
            return None
    if not name:
        report.passed.append(f"mlflow: {uri} answers")
        return None
    try:
        found = prod.find_production(name, uri)
    except UserError as err:
        report.problems += err.problems
        return None
    report.passed.append(f"mlflow: {uri} answers; production: "
                         f"{found.describe() if found else f'none registered as {name} yet (every leaf)'}")
    return found


def check_mt_bench(params: RunConfig | Mapping[str, Any], report: Report) -> None:
    """Present and verified. questions="" means the copy baked into the image (LABPIPE_MT_BENCH_DATA); in a
    pod without it that is an error (never the internet unless a URL is passed); on a laptop, FastChat's
    pinned files (downloaded once, cached)."""
    from labpipe.evaluation.questions import load_questions

    run = _run(params)
    location = run.questions
    try:
        questions, _ = load_questions(location, max_questions=int(run.max_questions or 0))
    except UserError as err:
        fix = ("pass --param questions=DIR (a copy of FastChat's mt_bench data folder, a file, s3:// or a URL) "
               f"or set {MT_BENCH_ENV}")  # the parameter, not `evaluate`'s --questions flag
        report.problems += [Problem(where=p.where, rule="mt-bench-data", message=p.message, fix=fix,
                                    field="questions") for p in err.problems]
        return
    shown = location or os.environ.get(MT_BENCH_ENV) or "FastChat's pinned files"
    report.passed.append(f"MT-Bench: {len(questions)} questions at {shown}, sha256 verified")


def check(params: Mapping[str, Any], *, network: bool = True, timeout: float = DEFAULT_TIMEOUT_S) -> Report:
    """Every check; all problems in one report. `params`: the run's parameters by name; the services named by
    those given are checked (the CLI and the pipeline's task give them all)."""
    from labpipe import storage

    started = time.monotonic()
    report = Report()
    run = _run(params)
    check_static(params, report)
    if network:
        steps: list[Callable[[], Any]] = []
        with bounded_requests(timeout, retries=1):
            production = check_mlflow(run, report, timeout) if (
                "mlflow_tracking_uri" in params or params.get("base") == prod.PRODUCTION_BASE) else None
        steps.append(lambda: check_taxonomy(run, report, timeout, production))
        for role in ("teacher", "judge"):
            if role in params:
                steps.append(lambda role=role: check_endpoint(role, run, report, timeout))
        if run.base_model:
            steps.append(lambda: check_model_dir("base_model", run.base_model, report))
        for name in OUTPUT_LOCATIONS:
            location = str(params.get(name) or "")  # output_root: a CLI-only location, not a pipeline parameter
            if storage.is_s3(location):
                steps.append(lambda name=name, location=location: check_s3_writable(name, location, report))
        if "questions" in params:
            steps.append(lambda: check_mt_bench(run, report))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(steps) or 1) as pool:  # the slowest check bounds the total
            for future in [pool.submit(step) for step in steps]:
                future.result()
        report.problems.sort(key=lambda p: (p.field, p.where))
        report.passed.sort()
    report.seconds = time.monotonic() - started
    return report


@dataclass
class PreflightConfig:
    params: dict[str, Any]  # pipeline parameters by name (as the run received them)
    out: str = ""  # the Markdown report (local path or s3://); "" = none
    network: bool = True
    timeout: float = DEFAULT_TIMEOUT_S
    run_id: str = ""
    tracking_uri: str = ""


def run_preflight(cfg: PreflightConfig) -> dict[str, Any]:
    """Check; write the report; raise one UserError with every problem, or return the summary."""
    from labpipe import storage

    report = check(cfg.params, network=cfg.network, timeout=cfg.timeout)
    for warning in report.warnings:
        print(str(warning), flush=True)  # in the task's log; the run goes on
    if cfg.out:
        storage.write_text(cfg.out, report.to_markdown())
    if report.problems:
        raise UserError(report.problems)
    return {"checks_passed": len(report.passed), "seconds": round(report.seconds, 2), "passed": report.passed,
            "warnings": [str(w) for w in report.warnings]}

"""Preflight: every misconfiguration of a pipeline run, found in seconds, before anything expensive runs.

`check(params)` runs every check and returns *all* problems (never the first only); each names the
pipeline parameter or Kubernetes secret at fault and the fix. Network checks have bounded timeouts and run
in parallel (after the MLflow lookup they may need), so the whole preflight ends well under a minute even
when every endpoint hangs (benchmarks/bench_preflight.py).

Checks: numbers in range, presets and profiles exist, node_selector/tolerations parse; the taxonomy can
be cloned at the ref and the base ref resolves (base=production: the production version's commit is in
the repository); teacher and judge endpoints answer GET /v1/models, list the named model and accept the
key; every s3:// location is reachable (output locations: a marker is written and deleted); the MLflow
server answers and the registered model's aliases can be read; the base model has a config and a
tokenizer; the MT-Bench data is present and verified (never the internet unless a URL is passed).

`network=False` runs only the checks that need nothing but the parameters (what `labpipe submit` can
check from a laptop that cannot reach in-cluster services).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.registry import production as prod
from labpipe.runs.tracking_check import bounded_requests

DEFAULT_TIMEOUT_S = 10.0
MT_BENCH_ENV = "LABPIPE_MT_BENCH_DATA"
# parameters naming locations the run writes to (checked writable when s3://)
OUTPUT_LOCATIONS = ("generation_cache", "checkpoint_root", "output_root")
# parameter -> (minimum, maximum or None)
RANGES: dict[str, tuple[float, float | None]] = {
    "chunk_tokens": (16, 1_000_000),
    "concurrency": (1, 4096),
    "samples_per_skill_leaf": (1, 100_000),
    "max_steps": (0, None),
    "gpus": (0, 64),
    "max_questions": (0, 80),
    "max_new_tokens": (1, 65_536),
    "gate_tolerance": (0.0, 10.0),
    "max_failed_share": (0.0, 1.0),
    "judge_attempts": (1, 20),
    "context_length": (0, None),
    "evaluation_gpus": (1, 64),
}
CHOICES = {
    "scope": prod.SCOPES,
    "checkpoint_selection": ("last", "best"),
    "evaluation_engine": ("hf", "vllm", "llamacpp"),  # labpipe.evaluation.engines; endpoint: CLI only
}


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


# -- checks that need only the parameters ------------------------------------------------------------


def check_static(params: dict[str, Any], report: Report) -> None:
    for name, (low, high) in RANGES.items():
        if name not in params:
            continue
        value = params[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            report.problems.append(_p(name, f"{value!r} is not a number", f"pass a number for {name}"))
            continue
        if number < low or (high is not None and number > high):
            span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            report.problems.append(_p(name, f"{value!r} is out of range", f"pass {name} {span}"))
    for name, allowed in CHOICES.items():
        if name in params and params[name] not in allowed:
            report.problems.append(_p(name, f"{params[name]!r} is not one of {', '.join(allowed)}",
                                      f"pass {name}={allowed[0]}"))
    _check_presets(params, report)
    _check_placement(params, report)
    for required, example in (("taxonomy", "https://git.example.com/org/taxonomy.git"),
                              ("base_model", "s3://bucket/models/granite-7b-base")):
        if required in params and not params[required]:  # the CLI passes a missing one as ""
            report.problems.append(_p(required, "is required", f"pass --param {required}={example}"))
    if params.get("base") == prod.PRODUCTION_BASE and not params.get("production_model_name"):
        report.problems.append(_p("production_model_name", "base=production needs a registered model name",
                                  "pass production_model_name=labpipe-model"))
    _check_training_scale(params, report)
    if params.get("serve"):
        from labpipe.evaluation.serving import NAME_RE

        if not NAME_RE.fullmatch(str(params["serve"])):
            report.problems.append(_p("serve", f"{params['serve']!r} is not a valid InferenceService name",
                                      "pass a DNS label: lower-case letters, digits and '-', starting with a "
                                      "letter, at most 63 characters (e.g. serve=granite-lab)"))  # fmt: skip
    if not report.problems:
        report.passed.append("parameters: numbers in range, presets exist, placement parses")
    _check_durable_state(params, report)


def _check_training_scale(params: dict[str, Any], report: Report) -> None:
    """The SFT task's own check (a TrainJob needs an s3:// checkpoint_root), before hours of generation."""
    if "training_backend" not in params and "training_nodes" not in params:
        return
    from labpipe.training.task import scale_problems

    try:
        nodes, gpus = int(params.get("training_nodes", 1)), int(params.get("gpus", 1))
    except (TypeError, ValueError):
        report.problems.append(_p("training_nodes", "training_nodes and gpus must be whole numbers",
                                  "pass training_nodes=1 gpus=1 (or more)"))
        return
    reported = {p.field for p in report.problems}  # gpus out of range: said once, by the range check
    for p in scale_problems(str(params.get("training_backend", "pod")), nodes, gpus,
                            str(params.get("checkpoint_root") or "")):
        if p.field not in reported:
            report.problems.append(_p(p.field, p.message, p.fix, rule=p.rule))


def _check_durable_state(params: dict[str, Any], report: Report) -> None:
    """In a pod, local state dies with the pod: a retried task would pay for its teacher requests again, and a
    killed training pod would start over."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return
    location = str(params.get("generation_cache") or "")
    if "generation_cache" in params and location != "off" and not location.startswith("s3://"):
        report.warnings.append(Problem(
            where="parameter generation_cache", rule="durable-state", field="generation_cache", severity="warning",
            message=f"{location or 'the default (local under LABPIPE_CACHE)'} is inside this pod: a retried or "
                    "later run resends every teacher and judge request",
            fix="pass generation_cache=s3://<bucket>/generation-cache (shared by shards, retries and later runs)"))
    root = str(params.get("checkpoint_root") or "")
    if "checkpoint_root" in params and not root.startswith("s3://") and not params.get("workspace"):
        report.warnings.append(Problem(
            where="parameter checkpoint_root", rule="durable-state", field="checkpoint_root", severity="warning",
            message=f"{root or 'the default (local under LABPIPE_CACHE)'} is inside the training pod and the "
                    "pipeline has no KFP workspace: a killed or retried SFT task starts training over",
            fix="pass checkpoint_root=s3://<bucket>/checkpoints (or compile with LABPIPE_WORKSPACE_SIZE=500Gi)"))


def _check_presets(params: dict[str, Any], report: Report) -> None:
    from labpipe.critique.profiles import PROFILES_DIR
    from labpipe.training.config import PHASES

    preset = params.get("training_preset")
    if preset is not None:
        phases = Path(__file__).parent / "training" / "phases" / str(preset)
        missing = [ph for ph in PHASES if not (phases / f"{ph}.yaml").is_file()]
        if missing:
            shipped = sorted(p.name for p in phases.parent.iterdir() if p.is_dir())
            report.problems.append(_p("training_preset", f"no preset {preset!r}",
                                      f"use one of {', '.join(shipped)}"))
    profile = params.get("critique_profile")
    if profile is not None and not (PROFILES_DIR / f"{profile}.yaml").is_file():
        shipped = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        report.problems.append(_p("critique_profile", f"no critique profile {profile!r}",
                                  f"use one of {', '.join(shipped)}"))


def _as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _check_placement(params: dict[str, Any], report: Report) -> None:
    if "node_selector" in params:
        try:
            selector = _as_json(params["node_selector"])
            if not isinstance(selector, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
            ):
                raise ValueError("expected an object of string labels")
        except ValueError as exc:
            report.problems.append(_p("node_selector", f"does not parse ({exc})",
                                      'pass a JSON object, e.g. {"nvidia.com/gpu.product": "H100"}'))
    if "tolerations" in params:
        try:
            tolerations = _as_json(params["tolerations"])
            if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
                raise ValueError("expected a list of objects")
            for t in tolerations:
                unknown = set(t) - {"key", "operator", "value", "effect", "tolerationSeconds"}
                if unknown:
                    raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
                if t.get("operator", "Equal") not in ("Equal", "Exists"):
                    raise ValueError(f"operator {t['operator']!r} is not Equal or Exists")
        except ValueError as exc:
            report.problems.append(_p("tolerations", f"does not parse ({exc})",
                                      'pass a JSON list, e.g. [{"key": "nvidia.com/gpu", "operator": "Exists", '
                                      '"effect": "NoSchedule"}]'))


# -- checks that reach services ------------------------------------------------------------------------


def check_taxonomy(params: dict[str, Any], report: Report, timeout: float, production: prod.ProductionModel | None
                   ) -> None:
    """The taxonomy clones at the ref (blobs left out: commits and trees suffice) and the base resolves."""
    from labpipe.taxonomy import gitrepo

    taxonomy, ref = str(params.get("taxonomy", "")), str(params.get("taxonomy_ref", ""))
    base = str(params.get("base", prod.PRODUCTION_BASE))
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


def check_endpoint(role: str, params: dict[str, Any], report: Report, timeout: float) -> None:
    """Every replica (`http://a/v1,http://b/v1`) answers GET /v1/models to the client's own probe, lists the
    named model, and accepts the key (from the role's secret)."""
    from labpipe.llm.endpoints import split_endpoints
    from labpipe.llm.openai_client import OpenAIChatClient
    from labpipe.llm.types import ModelSpec

    prefix = role.upper()
    target = str(params.get(role) or os.environ.get(f"{prefix}_ENDPOINT", ""))
    model = str(params.get(f"{role}_model") or os.environ.get(f"{prefix}_MODEL", ""))
    secret = str(params.get(f"{role}_secret") or f"labpipe-{role}")
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
                                  "check the URI and the S3 data connection (secret s3_secret)", rule="model"))
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
                                  "check the bucket exists and the S3 data connection (secret s3_secret) may write",
                                  rule="s3-write"))
        return
    report.passed.append(f"{param}: {location} is writable")


def check_mlflow(params: dict[str, Any], report: Report, timeout: float) -> prod.ProductionModel | None:
    """The server answers and the production alias of the registered model can be read."""
    uri = str(params.get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI", ""))
    name = str(params.get("production_model_name") or "")
    if not uri:
        report.problems.append(_p("mlflow_tracking_uri", "no MLflow tracking server (the gate, publishing and "
                                  "base=production need one)",
                                  "pass mlflow_tracking_uri=http://labpipe-mlflow:5000 (or set MLFLOW_TRACKING_URI)",
                                  rule="mlflow"))
        return None
    if uri.startswith(("http://", "https://")):
        from labpipe.runs import tracking  # MLflow's own client: MLFLOW_TRACKING_AUTH / _TOKEN apply

        found_problem = tracking.server_problem(uri)
        if found_problem is not None:
            message, fix = found_problem
            report.problems.append(_p("mlflow_tracking_uri", message, fix, rule="mlflow"))
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


def check_mt_bench(params: dict[str, Any], report: Report) -> None:
    """Present and verified. questions="" means the copy baked into the image (LABPIPE_MT_BENCH_DATA); in a
    pod without it that is an error (never the internet unless a URL is passed); on a laptop, FastChat's
    pinned files (downloaded once, cached)."""
    from labpipe.evaluation.questions import load_questions

    location = str(params.get("questions") or "")
    try:
        questions, _ = load_questions(location, max_questions=int(params.get("max_questions") or 0))
    except UserError as err:
        fix = ("pass --param questions=DIR (a copy of FastChat's mt_bench data folder, a file, s3:// or a URL) "
               f"or set {MT_BENCH_ENV}")  # the parameter, not `evaluate`'s --questions flag
        report.problems += [Problem(where=p.where, rule="mt-bench-data", message=p.message, fix=fix,
                                    field="questions") for p in err.problems]
        return
    shown = location or os.environ.get(MT_BENCH_ENV) or "FastChat's pinned files"
    report.passed.append(f"MT-Bench: {len(questions)} questions at {shown}, sha256 verified")


def check(params: dict[str, Any], *, network: bool = True, timeout: float = DEFAULT_TIMEOUT_S) -> Report:
    """Every check; all problems in one report."""
    from labpipe import storage

    started = time.monotonic()
    report = Report()
    check_static(params, report)
    if network:
        steps: list[Callable[[], Any]] = []
        with bounded_requests(timeout, retries=1):
            production = check_mlflow(params, report, timeout) if (
                "mlflow_tracking_uri" in params or params.get("base") == prod.PRODUCTION_BASE) else None
        steps.append(lambda: check_taxonomy(params, report, timeout, production))
        for role in ("teacher", "judge"):
            if role in params:
                steps.append(lambda role=role: check_endpoint(role, params, report, timeout))
        if params.get("base_model"):
            steps.append(lambda: check_model_dir("base_model", str(params["base_model"]), report))
        for name in OUTPUT_LOCATIONS:
            if storage.is_s3(str(params.get(name) or "")):
                steps.append(lambda name=name: check_s3_writable(name, str(params[name]), report))
        if "questions" in params:
            steps.append(lambda: check_mt_bench(params, report))
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

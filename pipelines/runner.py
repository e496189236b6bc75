"""Compile, run locally (kfp.local), submit and schedule the LAB pipeline.

The CLI (labpipe.commands.pipeline) imports this module lazily; it is the only place besides the
components and the DAG that touches kfp.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labpipe.errors import UserError
from labpipe.paths import pipelines_dir

PIPELINE_YAML = "lab_pipeline.yaml"


def compile_pipeline(out: str | Path | None = None) -> Path:
    """Compile the DAG to KFP IR YAML (deterministic: same code, same bytes)."""
    from kfp import compiler
    from labpipe.pipelines.lab_pipeline import lab_pipeline

    out = Path(out) if out else pipelines_dir() / PIPELINE_YAML
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(lab_pipeline, str(out))
    return out


@dataclass
class ProducedArtifact:
    task: str
    name: str
    uri: str
    metadata: dict[str, Any]


def run_local(arguments: dict[str, Any], pipeline_root: Path) -> tuple[str, list[ProducedArtifact]]:
    """Run the whole DAG with kfp.local in subprocesses of this environment; returns (job dir, artifacts)."""
    from kfp import local
    from labpipe.pipelines.lab_pipeline import lab_pipeline

    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in pipeline_root.iterdir()}
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    try:
        lab_pipeline(**arguments)
    except RuntimeError as exc:
        raise UserError(f"the local pipeline run failed: {str(exc).splitlines()[0]}",
                        fix="read the failing task's log above; each stage can be rerun alone with its labpipe command"
                        ) from None
    new = sorted((p for p in pipeline_root.iterdir() if p.name not in before), key=lambda p: p.stat().st_mtime)
    job_dir = new[-1] if new else pipeline_root
    return job_dir.name, collect_artifacts(job_dir)


def collect_artifacts(job_dir: Path) -> list[ProducedArtifact]:
    """Every output artifact of a finished local run, read from the tasks' executor_output.json."""
    found = []
    for output in sorted(job_dir.glob("**/executor_output.json"), key=lambda p: p.stat().st_mtime):
        data = json.loads(output.read_text())
        for name, arts in data.get("artifacts", {}).items():
            for art in arts.get("artifacts", []):
                found.append(ProducedArtifact(output.parent.name, name, art.get("uri", ""), art.get("metadata", {})))
    return found


@contextmanager
def talking_to(host: str, token_env: str) -> Iterator[None]:
    """Turn the pipeline server's refusals into one actionable line (no traceback, no token)."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        status = getattr(exc, "status", None) or getattr(getattr(exc, "__context__", None), "status", None)
        reason = f"HTTP {status}" if status else str(exc).splitlines()[0][:200]
        raise UserError(f"{host}: the pipeline server refused or could not be reached ({reason})",
                        fix=f"check --host and that ${token_env} holds a valid token (e.g. `oc whoami -t`)") from None


def kfp_client(host: str, namespace: str | None = None, token_env: str = "KFP_TOKEN"):
    """A kfp.Client for a Kubeflow / OpenShift AI pipeline server (bearer token from `token_env`)."""
    import kfp

    with talking_to(host, token_env):
        return kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get(token_env) or None)


def submit(host: str, arguments: dict[str, Any], *, experiment: str, run_name: str | None = None,
           namespace: str | None = None, package: Path | None = None, token_env: str = "KFP_TOKEN") -> str:
    client = kfp_client(host, namespace, token_env)
    package = package or pipelines_dir() / PIPELINE_YAML
    with talking_to(host, token_env):
        result = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, run_name=run_name or f"lab-{time.strftime('%Y%m%d-%H%M%S')}",
            experiment_name=experiment, namespace=namespace,
        )
    return result.run_id


def preflight(arguments: dict[str, Any], *, network: bool = False) -> None:
    """Before submit/schedule: what can be checked from the submitting machine (the parameters; with
    `network`, the services too). The pipeline's preflight task checks everything again from inside."""
    from labpipe.preflight import PreflightConfig, run_preflight

    run_preflight(PreflightConfig(params=arguments, network=network))


def to_kfp_cron(cron: str) -> str:
    """Kubeflow's scheduler takes 6-field cron (with seconds); accept the usual 5-field form too."""
    fields = cron.split()
    if len(fields) == 5:
        return "0 " + cron.strip()
    if len(fields) == 6:
        return cron.strip()
    raise UserError(f"--cron {cron!r}: expected 5 fields (min hour day month weekday) or 6 (with seconds first)",
                    fix="e.g. --cron '0 3 * * 0' for Sundays at 03:00")


def schedule(host: str, arguments: dict[str, Any], *, cron: str, experiment: str, name: str,
             namespace: str | None = None, package: Path | None = None, token_env: str = "KFP_TOKEN") -> str:
    cron = to_kfp_cron(cron)
    client = kfp_client(host, namespace, token_env)
    package = package or pipelines_dir() / PIPELINE_YAML
    with talking_to(host, token_env):
        exp = client.create_experiment(experiment, namespace=namespace)
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron,
            pipeline_package_path=str(package), params=arguments, max_concurrency=1, no_catchup=True,
            enable_caching=False,
        )
    return job.recurring_run_id

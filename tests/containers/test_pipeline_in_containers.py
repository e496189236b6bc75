"""The whole compiled pipeline, every task in its own image, as UID 1000650000 in group 0, with no network.

Teacher and judge are the tiny model in-process (a mounted folder); MLflow is a real `mlflow server` in a
container without network whose loopback the tasks share (they reach it and nothing else); the MT-Bench data the copy baked into the evaluation image (the `questions` parameter stays empty and
there is no network: nothing else could provide it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from labpipe.commands.pipeline import SMOKE_DEFAULTS
from tests.support.container_runner import run_compiled_pipeline, services_container, task_images

# the whole DAG on 2 shared CPU cores: longer than the suite's 600 s default per test
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


MLFLOW_PORT = 5000


@pytest.fixture(scope="module")
def container_run(compiled_yaml, image_prefix, tmp_path_factory):
    from labpipe.models.tiny import build_tiny_model
    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    registry, tag = image_prefix
    workdir = tmp_path_factory.mktemp("container-run")
    workdir.chmod(0o2775)
    model = str(build_tiny_model(workdir / "models" / "tiny"))
    server = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(MLFLOW_PORT), "--workers", "1",
              "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
              "--artifacts-destination", str(workdir / "mlartifacts"), "--serve-artifacts"]
    health = ["python", "-c", f"import urllib.request as u; u.urlopen('http://127.0.0.1:{MLFLOW_PORT}/health')"]
    # MLflow serves from a container with no network; the tasks share only its loopback
    with services_container(f"{registry}/labpipe-evaluation:{tag}", server, mounts=[workdir], ready=health) as svc:
        arguments = {
            "taxonomy": str(prepare_sample_taxonomy(workdir / "taxonomy")), "base": "empty", "base_model": model,
            "teacher": model, "judge": model, "mlflow_tracking_uri": f"http://127.0.0.1:{MLFLOW_PORT}",
            **SMOKE_DEFAULTS,
        }
        started = time.monotonic()
        job_dir, tasks = run_compiled_pipeline(compiled_yaml, arguments, workdir / "kfp", mounts=[workdir],
                                               network=f"container:{svc}")
        print(f"\ncontainer run: {len(tasks)} tasks in {time.monotonic() - started:.0f} s")
    yield workdir, job_dir, tasks


def _dag_executor_tasks(compiled_yaml: Path) -> dict[str, str]:
    """Root-level task name -> component name, for tasks that run an executor (not a nested DAG)."""
    spec = next(yaml.safe_load_all(compiled_yaml.read_text()))
    return {name: task["componentRef"]["name"] for name, task in spec["root"]["dag"]["tasks"].items()
            if "executorLabel" in spec["components"][task["componentRef"]["name"]]}


def test_every_task_of_the_compiled_pipeline_ran_in_its_image(container_run, compiled_yaml):
    workdir, job_dir, tasks = container_run
    assert tasks and all(t["returncode"] == 0 for t in tasks), tasks
    gpu_only = {i for i in task_images(compiled_yaml) if "labpipe-evaluation-gpu:" in i}  # evaluation_engine=vllm
    assert {t["image"] for t in tasks} == task_images(compiled_yaml) - gpu_only  # all four images, nothing else
    outputs = list(job_dir.glob("**/executor_output.json"))  # ParallelFor tasks sit in per-iteration folders
    done = {p.parent.name for p in outputs}
    missing = set(_dag_executor_tasks(compiled_yaml)) - done
    assert not missing, f"tasks of the compiled DAG that did not finish: {sorted(missing)}"
    assert "synthetic-generation" in done  # the fanned-out generation ran too
    assert len(outputs) == len(tasks)  # one podman run per finished task


def test_tasks_ran_as_the_arbitrary_uid(container_run):
    workdir, job_dir, _ = container_run
    owners = {p.stat().st_uid for p in job_dir.glob("**/executor_output.json")}
    assert owners == {1000650000}
    assert (workdir / "mlflow.db").stat().st_uid == 1000650000  # the server's store, written by the same UID


def test_artifacts_and_lineage(container_run):
    from labpipe.pipelines.runner import collect_artifacts
    from mlflow.tracking import MlflowClient

    from labpipe.runs import lineage, tracking

    workdir, job_dir, _ = container_run
    arts = {(a.task, a.name): a for a in collect_artifacts(job_dir)}
    seeds = [json.loads(line) for line in open(arts[("seed-extraction", "seeds")].uri)]
    assert {r["kind"] for r in seeds} == {"knowledge", "freeform_skill", "grounded_skill"}
    assert sum(1 for _ in open(arts[("critique-filter", "skills_set")].uri)) > 0
    trained = Path(arts[("sft-2", "model")].uri)
    assert any((p / "config.json").exists() for p in (trained, trained / "model"))
    evaluation = arts[("mt-bench-eval", "decision")]
    decision = json.loads(Path(evaluation.uri).read_text())
    assert "publish" in decision and decision.get("reasons")  # MT-Bench ran on the image's baked questions
    uri = f"sqlite:///{workdir / 'mlflow.db'}"  # what the tasks logged over HTTP, read from the server's store
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    parents = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get(tracking.ROLE_TAG) == "pipeline"]
    assert len(parents) == 1
    info = lineage.describe(uri, pipeline_run_id=parents[0].data.tags[tracking.PIPELINE_RUN_TAG])
    for stage in ("taxonomy_diff", "seed_extraction", "synthetic_generation", "critique_filter",
                  "knowledge_sft", "skill_sft", "mt_bench_eval"):
        assert stage in info.stages, f"no lineage recorded for {stage}"

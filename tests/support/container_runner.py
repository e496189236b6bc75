"""Run a compiled pipeline (the KFP IR YAML) with every task in its own image, the way a cluster would.

kfp.local's orchestrator walks the compiled PipelineSpec (tasks, dependencies, conditions, ParallelFor and
Collected, exit handlers, artifact passing, placeholders): whatever the YAML contains runs, nothing is
hand-listed. Each task's compiled `command` + `args` (executor input filled in) then runs in the task's
`image` with podman instead of docker-py:

  podman run --rm --pull=never --user 1000650000:0 --network none|container:<services> -v ROOT:ROOT image cmd...

- as an OpenShift-style arbitrary UID in group 0 (the image must make what it writes group-0 writable);
- without network (`--network none`), or sharing only the loopback of a services container (the local
  test servers: MLflow, S3, a teacher), which itself has no network (`podman run --network none`);
- the exit status of `podman run` is the task's status (no log-stream guessing).

The host folder holding the pipeline root (and the run's inputs) is mounted at the same path, group-0
writable like a pod's volume (`fsGroup`/group 0 on OpenShift).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ARBITRARY_UID = "1000650000:0"


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)


def _podman_task_handler(mounts: Sequence[Path], network: str, user: str, log: list[dict[str, Any]]):
    from kfp.local import docker_task_handler, status

    class PodmanTaskHandler(docker_task_handler.DockerTaskHandler):
        def run(self) -> status.Status:
            name = f"labpipe-task-{uuid.uuid4().hex[:12]}"
            cmd = ["podman", "run", "--rm", f"--name={name}", "--pull=never", f"--user={user}", f"--network={network}"]
            for path in {str(Path(self.pipeline_root)), *map(str, mounts)}:
                cmd += ["-v", f"{path}:{path}:rw"]
            for key, value in (self.env_vars or {}).items():
                cmd += ["-e", f"{key}={value}"]
            cmd += [self.image, *self.full_command]
            try:
                proc = subprocess.run(cmd, stdout=sys.stdout.fileno() if _has_fileno() else None,
                                      stderr=subprocess.STDOUT)
            except BaseException:  # interrupted (a test timeout, Ctrl-C): the container must not outlive us
                subprocess.run(["podman", "rm", "-f", "-t", "2", name], capture_output=True)
                raise
            log.append({"image": self.image, "returncode": proc.returncode})
            return status.Status.SUCCESS if proc.returncode == 0 else status.Status.FAILURE

    return PodmanTaskHandler


def _has_fileno() -> bool:
    try:
        sys.stdout.fileno()
        return True
    except (OSError, ValueError, AttributeError):
        return False


@contextmanager
def _tasks_in_podman(handler) -> Iterator[None]:
    from kfp.local import docker_task_handler, task_dispatcher

    saved = docker_task_handler.DockerTaskHandler, task_dispatcher._DOCKER_AVAILABLE
    docker_task_handler.DockerTaskHandler, task_dispatcher._DOCKER_AVAILABLE = handler, True
    try:
        yield
    finally:
        docker_task_handler.DockerTaskHandler, task_dispatcher._DOCKER_AVAILABLE = saved


def load_pipeline_spec(yaml_path: Path):
    """The PipelineSpec of a compiled pipeline YAML (its first document; the second is the platform spec)."""
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    docs = list(yaml.safe_load_all(yaml_path.read_text()))
    return json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())


def task_images(yaml_path: Path) -> set[str]:
    """Every image the compiled pipeline's tasks run in."""
    return {ex["container"]["image"] for ex in _executors(yaml_path).values()}


def _executors(yaml_path: Path) -> dict[str, Any]:
    import yaml

    return next(yaml.safe_load_all(yaml_path.read_text()))["deploymentSpec"]["executors"]


def run_compiled_pipeline(yaml_path: Path, arguments: dict[str, Any], pipeline_root: Path, *,
                          mounts: Sequence[Path] = (), network: str = "none", user: str = ARBITRARY_UID
                          ) -> tuple[Path, list[dict[str, Any]]]:
    """Run `yaml_path` with kfp.local's orchestrator, each task in podman. Returns (job dir, task log)."""
    from kfp import local
    from kfp.local import pipeline_orchestrator

    pipeline_root.mkdir(parents=True, exist_ok=True)
    for folder in {pipeline_root, *mounts}:
        os.chmod(folder, 0o2775)  # group 0 writes, as on a pod's volume
    before = {p.name for p in pipeline_root.iterdir()}
    log: list[dict[str, Any]] = []
    old_umask = os.umask(0o002)  # folders kfp.local creates for each task: group 0 writable too
    try:
        local.init(runner=local.DockerRunner(), pipeline_root=str(pipeline_root), raise_on_error=True)
        with _tasks_in_podman(_podman_task_handler(mounts, network, user, log)):
            pipeline_orchestrator.run_local_pipeline(pipeline_spec=load_pipeline_spec(yaml_path), arguments=arguments)
    finally:
        os.umask(old_umask)
    new = sorted((p for p in pipeline_root.iterdir() if p.name not in before), key=lambda p: p.stat().st_mtime)
    return (new[-1] if new else pipeline_root), log


@contextmanager
def services_container(image: str, command: Sequence[str], *, mounts: Sequence[Path] = (), user: str = ARBITRARY_UID,
                       ready: Sequence[str] = (), timeout: float = 240.0) -> Iterator[str]:
    """A container with no network of its own running the local test servers (e.g. `mlflow server` on
    127.0.0.1); tasks join its loopback with `network=f"container:{name}"` and reach nothing else.
    `ready`: a command run inside it (podman exec) until it succeeds. Yields the container's name."""
    import time

    name = f"labpipe-services-{uuid.uuid4().hex[:12]}"
    cmd = ["run", "-d", "--rm", f"--name={name}", "--pull=never", f"--user={user}", "--network=none"]
    for path in map(str, mounts):
        cmd += ["-v", f"{path}:{path}:rw"]
    podman(*cmd, image, *command)
    try:
        deadline = time.monotonic() + timeout
        while ready and podman("exec", name, *ready, check=False).returncode != 0:
            if time.monotonic() > deadline or podman("container", "exists", name, check=False).returncode != 0:
                logs = podman("logs", name, check=False).stdout[-3000:]
                raise RuntimeError(f"the services container did not become ready:\n{logs}")
            time.sleep(2)
        yield name
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)

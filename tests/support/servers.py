"""Real local servers for integration tests: an S3 endpoint (moto), an MLflow tracking server, and
`RealServer`, one model-server process (llama.cpp, transformers serve, vLLM) that tests and benchmarks start.

All listen on 127.0.0.1 only and are stopped when their fixture (or caller) ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "labpipe-test",
    "AWS_SECRET_ACCESS_KEY": "labpipe-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[str]:
    """A moto S3 endpoint on 127.0.0.1; yields its URL. Sets nothing in os.environ."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def mlflow_server(workdir: Path, *, s3_endpoint: str | None = None, bucket: str = "mlflow",
                  extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Iterator[str]:
    """A real `mlflow server` process (SQLite backend; artifacts proxied to S3 when an endpoint is given);
    `env` is added to the server's environment."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
    ]
    env = {**os.environ, **(env or {})}
    if s3_endpoint:
        import boto3

        boto3.client("s3", endpoint_url=s3_endpoint, **_boto_kwargs()).create_bucket(Bucket=bucket)
        cmd += ["--artifacts-destination", f"s3://{bucket}/artifacts", "--serve-artifacts"]
        env.update(S3_ENV, MLFLOW_S3_ENDPOINT_URL=s3_endpoint)
    else:
        cmd += ["--artifacts-destination", str(workdir / "artifacts"), "--serve-artifacts"]
    cmd += list(extra_args)  # e.g. --enable-workspaces
    log = open(workdir / "mlflow-server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(workdir / 'mlflow-server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not become healthy in 120 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _boto_kwargs() -> dict:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


class RealServer:
    """One server process on 127.0.0.1:port; `base_url` ends in /v1."""

    def __init__(self, name: str, cmd: list[str], port: int, log: Path, ready_path: str, env=None):
        self.name, self.cmd, self.port, self.log, self.ready_path = name, cmd, port, log, ready_path
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.model: Path | None = None  # the model directory it serves, where a test needs it

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180) -> RealServer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

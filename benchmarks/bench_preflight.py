"""Preflight wall time against its budget (well under a minute), healthy and with every service hanging.

Side by side in this script: (a) every service up (git over file://, the fake OpenAI server as teacher and
judge, a moto S3 endpoint for the base model and the cache, SQLite MLflow, MT-Bench from ../shared);
(b) the same configuration with teacher, judge and MLflow pointing at "black holes" (sockets that accept
connections and never answer) - the worst case, bounded only by the timeouts. Reported as seconds and
as the share of the 60 s budget; also the sequential sum of (b)'s network timeouts, to show the parallel
checks' gain.

    python benchmarks/bench_preflight.py [--timeout 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import _checkout  # noqa: F401  (tests.support from a checkout)

from labpipe import storage
from labpipe.models.tiny import build_tiny_model
from labpipe.preflight import check
from labpipe.taxonomy import gitrepo
from labpipe.taxonomy.sample import prepare_sample_taxonomy
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.servers import S3_ENV, s3_server

BUDGET_S = 60.0


def black_hole() -> tuple[str, socket.socket]:
    """A listening socket that accepts and never answers; returns its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    shared = Path(os.environ.get("LABPIPE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp, s3_server() as s3_url, FakeOpenAIServer(model="m") as server:
        tmp = Path(tmp)
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=s3_url, LABPIPE_CACHE=str(tmp / "cache"))
        work = prepare_sample_taxonomy(tmp / "repos")
        bare = tmp / "repos" / "taxonomy.git"
        gitrepo.git("clone", "--quiet", "--bare", str(work), str(bare))
        client = storage.s3_client()
        client.create_bucket(Bucket="models")
        client.create_bucket(Bucket="cache")
        storage.upload_dir(build_tiny_model(tmp / "tiny"), "s3://models/tiny")
        healthy = {
            "taxonomy": bare.as_uri(), "taxonomy_ref": "", "base": "production", "scope": "taxonomy",
            "base_model": "s3://models/tiny", "teacher": server.base_url, "teacher_model": "m",
            "judge": server.base_url, "judge_model": "m", "questions": str(shared / "mt_bench"),
            "max_questions": 0, "training_preset": "lab", "critique_profile": "lab",
            "mlflow_tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}", "production_model_name": "labpipe-model",
            "generation_cache": "s3://cache/generation",
        }
        check(healthy, timeout=args.timeout)  # warm-up: imports (mlflow, boto3) are not the preflight's cost
        started = time.monotonic()
        ok = check(healthy, timeout=args.timeout)
        healthy_s = time.monotonic() - started
        assert not ok.problems, [str(p) for p in ok.problems]

        hole, sock = black_hole()
        hanging = {**healthy, "teacher": f"{hole}/v1", "judge": f"{hole}/v1", "mlflow_tracking_uri": hole}
        started = time.monotonic()
        bad = check(hanging, timeout=args.timeout)
        hanging_s = time.monotonic() - started
        sock.close()
        assert {p.field for p in bad.problems} == {"teacher", "judge", "mlflow_tracking_uri"}, bad.problems

    print(f"| preflight, every service healthy | {healthy_s:.1f} s | {healthy_s / BUDGET_S:.0%} of 60 s |")
    print(f"| preflight, teacher + judge + MLflow hanging (timeout {args.timeout:g} s) | {hanging_s:.1f} s | "
          f"{hanging_s / BUDGET_S:.0%} of 60 s (sequential timeouts alone: {3 * args.timeout:.0f} s) |")


if __name__ == "__main__":
    main()

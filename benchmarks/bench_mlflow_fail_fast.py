"""An MLflow that is not there: how long the pipeline's exit task takes to say so, bounded vs MLflow's defaults.

The exit task (components/finalize_run) closes the pipeline's MLflow run. Against a closed 127.0.0.1 port,
`labpipe.runs.tracking_check.finalize_pipeline_run` (MLflow's retries bounded to 3, 10 s per request) is timed
side by side with the same close through MLflow's client at its default retry settings
(`labpipe.runs.tracking.finalize_from_kfp_status`, what the task called before), each in a fresh process;
then `labpipe runs` and `labpipe lineage` against the same port (their one-line fail-fast check).

    python benchmarks/bench_mlflow_fail_fast.py [--baseline]   # --baseline: also the unbounded close (~4 min)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import _checkout  # noqa: F401  (tests.support from a checkout)

from tests.support.servers import free_port  # a port nobody listens on

CALL = {
    "bounded": "from labpipe.runs.tracking_check import finalize_pipeline_run as close",
    "mlflow defaults": "from labpipe.runs.tracking import finalize_from_kfp_status as close",
}


def timed(kind: str, uri: str) -> dict:
    code = f"{CALL[kind]}\nclose('run-1', {uri!r}, {{'state': 'FAILED'}})"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    said = (done.stderr.strip().splitlines() or [""])[-1][:160]
    return {"close": kind, "seconds": round(time.perf_counter() - started, 1), "rc": done.returncode, "said": said}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", action="store_true", help="also time MLflow's default retries (~4 min)")
    args = parser.parse_args()
    uri = f"http://127.0.0.1:{free_port()}"
    rows = [timed("bounded", uri)] + ([timed("mlflow defaults", uri)] if args.baseline else [])
    for command in (["runs"], ["lineage", "labpipe-model@production"]):  # the CLI's reads (require_tracking)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "labpipe.cli", *command, "--tracking-uri", uri],
                              capture_output=True, text=True)  # fmt: skip
        print(json.dumps({"command": f"labpipe {' '.join(command)}", "rc": done.returncode,
                          "seconds": round(time.perf_counter() - started, 1),
                          "lines": len(done.stderr.strip().splitlines())}), flush=True)  # fmt: skip
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.baseline:
        print(json.dumps({"ratio (defaults / bounded)": round(rows[1]["seconds"] / rows[0]["seconds"], 1)}))


if __name__ == "__main__":
    main()

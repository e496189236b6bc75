"""The whole pipeline in its containers next to the same pipeline through kfp.local, run side by side.

Both run at the same time on the same machine, so both see the same load (a shared 2-core machine's load
moves by minutes; concurrent runs compare under the same conditions, sequential ones do not):
- containers: tests/containers/test_pipeline_in_containers.py (the compiled YAML, each task in its image as
  UID 1000650000 without network, MLflow server in a network-less container), its "container run" line;
- kfp.local: `labpipe run` (subprocesses of this environment, tiny model, sample taxonomy, SQLite MLflow),
  its "pipeline ... finished in N s" line.
Then the image sizes and build times that scripts/build-images.sh --timings recorded.

Needs the images of `make test-containers` (localhost/labpipe/*:ci) and CONTAINERS_CONF as
scripts/test-containers.sh sets it.
  python benchmarks/bench_containers.py [--timings .ci-cache/containers/timings.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default="localhost/labpipe:ci")
    parser.add_argument("--timings", default=str(ROOT / ".ci-cache" / "containers" / "timings.jsonl"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-containers-"))
    env = {**os.environ, "LABPIPE_TEST_IMAGES": args.images}
    env.pop("MLFLOW_TRACKING_URI", None)
    mt_bench = ROOT.parent / "shared" / "data" / "mt_bench"

    started = time.monotonic()
    containers = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/containers/test_pipeline_in_containers.py"],
        cwd=ROOT, env=env, stdout=open(work / "containers.log", "w"), stderr=subprocess.STDOUT)
    local = subprocess.Popen(
        [str(Path(sys.executable).with_name("labpipe")), "run", "--workdir", str(work / "local"),
         "--param", f"questions={mt_bench}"],
        cwd=ROOT, env={**env, "LABPIPE_CACHE": str(work / "cache")},
        stdout=open(work / "local.log", "w"), stderr=subprocess.STDOUT)
    rc_local, rc_containers = local.wait(), containers.wait()
    print(f"both done in {time.monotonic() - started:.0f} s; logs in {work}")
    if rc_local or rc_containers:
        print(f"FAILED: labpipe run rc={rc_local}, container test rc={rc_containers}")
        return 1
    local_s = float(re.search(r"pipeline \S+ finished in (\d+) s", (work / "local.log").read_text()).group(1))
    found = re.search(r"container run: (\d+) tasks in (\d+) s", (work / "containers.log").read_text())
    tasks, container_s = int(found.group(1)), float(found.group(2))
    print(f"\n| run (side by side) | tasks | wall s | ratio |\n|---|---:|---:|---:|\n"
          f"| kfp.local subprocesses (`labpipe run`) | {tasks} | {local_s:.0f} | 1.00 |\n"
          f"| containers (podman, UID 1000650000, no network) | {tasks} | {container_s:.0f} | "
          f"{container_s / local_s:.2f} |")
    timings = Path(args.timings)
    if timings.exists():
        print("\n| image | build s | size MB |\n|---|---:|---:|")
        for line in timings.read_text().splitlines():
            row = json.loads(line)
            print(f"| {row['image']} | {row['build_s']:.0f} | {row['size_bytes'] / 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

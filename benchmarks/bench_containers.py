"""The whole pipeline in its containers vs kfp.local subprocesses, side by side, same arguments.

Needs the images of `make test-containers` (localhost/labpipe/*:ci) and podman (CONTAINERS_CONF as
scripts/test-containers.sh sets it). Runs the compiled pipeline once each way and prints wall times, the
ratio, and the image sizes and build times recorded by scripts/build-images.sh --timings.

  python benchmarks/bench_containers.py [--images localhost/labpipe:ci] [--timings .ci-cache/containers/timings.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default="localhost/labpipe:ci")
    parser.add_argument("--timings", default=str(ROOT / ".ci-cache" / "containers" / "timings.jsonl"))
    args = parser.parse_args()

    from kfp import local
    from kfp.local import pipeline_orchestrator

    from labpipe.commands.pipeline import SMOKE_DEFAULTS
    from labpipe.models.tiny import build_tiny_model
    from labpipe.taxonomy.sample import prepare_sample_taxonomy
    from tests.support.container_runner import load_pipeline_spec, run_compiled_pipeline

    registry, _, tag = args.images.rpartition(":")
    work = Path(tempfile.mkdtemp(prefix="bench-containers-"))
    compiled = work / "lab_pipeline.yaml"
    subprocess.run([str(Path(sys.executable).with_name("labpipe")), "compile", "--out", str(compiled)], check=True,
                   env={**os.environ, "LABPIPE_IMAGE_REGISTRY": registry, "LABPIPE_IMAGE_TAG": tag})
    mt_bench = ROOT.parent / "shared" / "data" / "mt_bench"

    def arguments(workdir: Path, questions: str) -> dict:
        model = str(build_tiny_model(workdir / "models" / "tiny"))
        return {"taxonomy": str(prepare_sample_taxonomy(workdir / "taxonomy")), "base": "empty",
                "base_model": model, "teacher": model, "judge": model, "questions": questions,
                "mlflow_tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}", **SMOKE_DEFAULTS}

    # baseline: kfp.local subprocesses in this environment (what `labpipe run` does), the same compiled spec
    base_dir = work / "subprocess"
    base_args = arguments(base_dir, str(mt_bench))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(base_dir / "kfp"), raise_on_error=True)
    started = time.monotonic()
    pipeline_orchestrator.run_local_pipeline(pipeline_spec=load_pipeline_spec(compiled), arguments=base_args)
    subprocess_s = time.monotonic() - started

    cont_dir = work / "containers"
    cont_args = arguments(cont_dir, "")  # the evaluation image's baked MT-Bench copy
    started = time.monotonic()
    _, tasks = run_compiled_pipeline(compiled, cont_args, cont_dir / "kfp", mounts=[cont_dir])
    container_s = time.monotonic() - started

    print(f"\nwhole pipeline, {len(tasks)} tasks: kfp.local subprocesses {subprocess_s:.0f} s, "
          f"containers (podman, UID 1000650000, no network) {container_s:.0f} s, "
          f"ratio {container_s / subprocess_s:.2f}x")
    timings = Path(args.timings)
    if timings.exists():
        print("\n| image | build s | size MB |\n|---|---:|---:|")
        for line in timings.read_text().splitlines():
            row = json.loads(line)
            print(f"| {row['image']} | {row['build_s']:.0f} | {row['size_bytes'] / 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

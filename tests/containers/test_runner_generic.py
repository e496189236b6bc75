"""The container runner executes whatever a compiled pipeline holds, not a list of labpipe's stages:
ParallelFor fan-out with Collected fan-in, a condition, an exit handler, artifacts and parameters between
tasks, each task in the image its component names, as the arbitrary UID, without network."""

import json
from pathlib import Path

from tests.support.container_runner import run_compiled_pipeline, task_images


def _compile(image: str, out: Path) -> Path:
    from kfp import compiler, dsl
    from kfp.dsl import Dataset, Input, Output

    @dsl.component(base_image=image)
    def shard(i: int) -> int:
        return i * 10

    @dsl.component(base_image=image)
    def total(parts: list, summary: Output[Dataset]) -> int:
        import json
        import os

        parts = sorted(int(p) for p in parts)  # kfp.local passes Collected ints as floats
        with open(summary.path, "w") as f:
            json.dump({"parts": parts, "uid": os.getuid()}, f)
        return sum(parts)

    @dsl.component(base_image=image)
    def report(summary: Input[Dataset], marker_dir: str):
        import shutil

        shutil.copy(summary.path, f"{marker_dir}/report.json")

    @dsl.component(base_image=image)
    def finalize(marker_dir: str):
        import os

        with open(f"{marker_dir}/finalized", "w") as f:
            f.write(str(os.getuid()))

    @dsl.pipeline(name="generic")
    def generic(marker_dir: str, shards: list = [1, 2, 3]):  # noqa: B006 - a KFP default
        with dsl.ExitHandler(finalize(marker_dir=marker_dir)):
            with dsl.ParallelFor(shards) as i:
                part = shard(i=i)
            summed = total(parts=dsl.Collected(part.output))
            with dsl.If(summed.outputs["Output"] > 10):
                report(summary=summed.outputs["summary"], marker_dir=marker_dir)

    compiler.Compiler().compile(generic, str(out))
    return out


def test_fan_out_fan_in_condition_and_exit_handler_run_in_containers(tmp_path, image_prefix):
    registry, tag = image_prefix
    image = f"{registry}/labpipe-taxonomy:{tag}"
    compiled = _compile(image, tmp_path / "generic.yaml")
    assert task_images(compiled) == {image}
    markers = tmp_path / "markers"
    markers.mkdir()
    job_dir, tasks = run_compiled_pipeline(compiled, {"marker_dir": str(markers)}, tmp_path / "kfp",
                                           mounts=[markers])
    assert len(tasks) == 6 and all(t["returncode"] == 0 for t in tasks)  # 3 shards, total, report, finalize
    report = json.loads((markers / "report.json").read_text())
    assert report == {"parts": [10, 20, 30], "uid": 1000650000}  # Collected fan-in, condition true
    assert (markers / "finalized").read_text() == "1000650000"  # the exit handler ran

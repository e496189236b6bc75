"""Bytes each task moves between the training phases and evaluation, before and after slimming the Model artifact.

Runs the two SFT phases for real (tiny model, smoke preset, taxonomy-derived sets from ../shared/data) twice, side
by side: "before" keeps the checkpoints in the Model artifact (checkpoint_dir="", the old layout), "after" sends
them to a durable s3:// location on a local moto S3 (the slim artifact: model/ + training_summary.json). Then it
counts what each pipeline task moves on a cluster:
  - the KFP launcher uploads a task's output artifacts and downloads its input artifacts (the directory sizes);
  - the task itself uploads checkpoints to the durable location (counted at labpipe.storage.upload_file);
  - evaluation with checkpoint_selection=best also downloads the checkpoints it scores.
and projects the same layout to an 8B model (fp32 weights as trained, fp32 Adam moments, keep_last 3 as the lab preset).
Usage: python benchmarks/bench_artifact_bytes.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from _checkout import REPO

from tests.unit.training.taxonomy_samples import write_sets


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = Path(tempfile.mkdtemp(prefix="bench-bytes-"))
    os.environ["LABPIPE_CACHE"] = str(root / "cache")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "x",
                       "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"})  # fmt: skip
    from labpipe import storage
    from labpipe.models.tiny import build_tiny_model
    from labpipe.training import checkpoints
    from labpipe.training.config import TrainingConfig
    from labpipe.training.stage import run_training

    storage.s3_client().create_bucket(Bucket="bench")
    uploaded = {"bytes": 0}
    original = storage.upload_file

    def counting_upload(local, uri):
        uploaded["bytes"] += Path(local).stat().st_size
        return original(local, uri)

    storage.upload_file = counting_upload
    shared = Path(os.environ.get("LABPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not shared.exists():
        raise SystemExit(f"real test data not found at {shared}: check out ../shared or set LABPIPE_SHARED_DATA")
    knowledge, skills = write_sets(shared, root / "data", skills_replay=5)
    base = build_tiny_model(root / "tiny")

    rows = {}
    for mode in ("before", "after"):
        ckpt = {"knowledge": "", "skills": ""}
        if mode == "after":
            ckpt = {p: f"s3://bench/ckpt/run/{p}" for p in ckpt}
        task_uploads = {}
        uploaded["bytes"] = 0
        k_out, s_out = root / mode / "knowledge", root / mode / "skills"
        run_training(TrainingConfig(phase="knowledge", base_model=str(base), data=str(knowledge), out=str(k_out),
                                    checkpoint_dir=ckpt["knowledge"]))  # fmt: skip
        task_uploads["knowledge"] = uploaded["bytes"]
        uploaded["bytes"] = 0
        run_training(TrainingConfig(phase="skills", base_model=str(k_out), data=str(skills), out=str(s_out),
                                    checkpoint_dir=ckpt["skills"]))  # fmt: skip
        task_uploads["skills"] = uploaded["bytes"]
        k_art, s_art = du(k_out), du(s_out)
        s_summary = json.loads((s_out / "training_summary.json").read_text())
        # the skills checkpoints an evaluation with selection=best scores: inside the artifact before, fetched after
        kept = 0 if mode == "before" else du(checkpoints.mirror_dir(ckpt["skills"]) / "checkpoints")
        rows[mode] = {
            "knowledge_sft": {"down": du(base), "up": k_art + task_uploads["knowledge"]},
            "skill_sft": {"down": k_art, "up": s_art + task_uploads["skills"]},
            "mt_bench_eval (last)": {"down": s_art, "up": 0},
            "mt_bench_eval (best)": {"down": s_art + kept, "up": 0},
            "publish": {"down": s_art, "up": 0},
            "_artifacts": {"knowledge": k_art, "skills": s_art, "checkpoints": len(s_summary.get("checkpoints", []))},
        }
    server.stop()

    print("| task | before: down / up | after (slim): down / up |")
    print("|---|---|---|")
    totals = {"before": 0, "after": 0}
    for task in rows["before"]:
        if task.startswith("_"):
            continue
        b, a = rows["before"][task], rows["after"][task]
        if task != "mt_bench_eval (best)":
            totals["before"] += b["down"] + b["up"]
            totals["after"] += a["down"] + a["up"]
        print(f"| {task} | {mib(b['down'])} / {mib(b['up'])} | {mib(a['down'])} / {mib(a['up'])} |")
    print(f"| total (selection=last) | {mib(totals['before'])} | {mib(totals['after'])} |")
    print(f"artifacts before: {rows['before']['_artifacts']}, after: {rows['after']['_artifacts']}")

    # An 8B model, same layout: weights in the training dtype (float32: run_training loads the model in fp32 and
    # bf16 is autocast), a checkpoint = weights + 2 fp32 Adam moments; keep_last 3 as the lab preset.
    params, keep = 8.0e9, 3
    model, ckpt = 4 * params, 4 * params + 8 * params
    gb = 1e9
    before_art, after_art = model + keep * ckpt, model
    print(f"8B projection: Model artifact {before_art / gb:.0f} GB -> {after_art / gb:.0f} GB; bytes moved by "
          f"skill_sft + evaluation + publish downloads: {3 * before_art / gb:.0f} GB -> {3 * after_art / gb:.0f} GB")  # fmt: skip


if __name__ == "__main__":
    main()

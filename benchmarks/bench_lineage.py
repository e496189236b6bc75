"""What the dataset lineage costs a stage: `lineage.record` with its datasets (digest every input/output,
log them as MLflow dataset inputs on the stage run) vs the same record() of tags only (the baseline,
what it did before), side by side against one local MLflow store, for a generated set of a given size.

    python benchmarks/bench_lineage.py [--mb 1 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path

from labpipe.runs import datasets, lineage, tracking


def _make_set(folder: Path, mb: int) -> Path:
    folder.mkdir(parents=True)
    row = json.dumps({"messages": [{"role": "user", "content": "q" * 400}, {"role": "assistant", "content": "a" * 500}]})
    with open(folder / "generated.jsonl", "w") as f:
        for _ in range(mb * 2**20 // (len(row) + 1)):
            f.write(row + "\n")
    return folder


def _time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-lineage-"))
    uri = tracking.default_tracking_uri(work / "store")
    print("| generated set | tags only (baseline) | tags + datasets | ratio | digest throughput |")
    print("|---:|---:|---:|---:|---:|")
    for mb in args.mb:
        generated = _make_set(work / f"gen-{mb}", mb)
        pid = f"bench-{mb}"
        with tracking.stage_run("critique_filter", pipeline_run_id=pid, tracking_uri=uri):
            pass
        record = functools.partial(lineage.record, "critique_filter", {"generated": 10, "kept": 8},
                                   pipeline_run_id=pid, tracking_uri=uri)
        tags_only = functools.partial(record, inputs={"x": str(generated)})  # "x" is not a dataset name
        with_datasets = functools.partial(record, inputs={"generated": str(generated)})
        tags_only()  # warm: MLflow imports, store schema
        base = _time(tags_only, args.repeat)
        full = _time(with_datasets, args.repeat)
        digest = _time(functools.partial(datasets.dataset_digest, generated), args.repeat)
        print(f"| {mb} MB | {base:.3f} s | {full:.3f} s | {full / base:.2f}x | {mb / digest:.0f} MB/s |")


if __name__ == "__main__":
    main()

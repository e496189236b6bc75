"""The synthetic-generation stage: seed records in, generated records (with checkpoints) out.

    run_generation(GenerationConfig(seeds="seeds.jsonl", out="gen/", teacher="http://host/v1"))

Output directory `out`:
  checkpoints/<leaf>.jsonl  every completed teacher call, appended and flushed (the resume state)
  generated.jsonl           one record per generated example, written atomically when complete
  manifest.json             counts per leaf and per step (kept, dropped and why), written last

All leaves advance together one step at a time, so every request of a step is in one concurrent
batch. Rerunning with the same `out` sends only the requests that have no checkpointed result.
With the shared generation cache (`generation_cache`: "" = local under $LABPIPE_CACHE, an s3://
prefix on a cluster, "off"), a run in a fresh `out` also reuses every reply any run stored there
(docs/generation-cache.md); `requests_sent` / `requests_reused` say what was paid for.

Model resolution (teacher here, judge in critique): the flag/parameter, else the environment a
Kubernetes secret is mounted as: TEACHER_ENDPOINT, TEACHER_MODEL, TEACHER_API_KEY (JUDGE_* for the
judge). The API key is read from the variable named by `api_key_env` (default: TEACHER_API_KEY when
set, else OPENAI_API_KEY) by the client only; it is never logged, stored or returned.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.generation.checkpoint import CallStats, Checkpoint, complete
from labpipe.generation.client import ChatClient, resolve_model_spec
from labpipe.generation.flow import KINDS, Flow, apply, load_flows, plan, start_items

log = logging.getLogger(__name__)
GENERATED = "generated.jsonl"
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"


@dataclass
class GenerationConfig:
    seeds: str  # seed records JSONL (local path or s3://)
    out: str  # output directory (local); rerunning with the same one resumes
    teacher: str = ""  # http(s)://.../v1 or a local model dir / s3://; empty: TEACHER_ENDPOINT
    teacher_model: str = ""
    api_key_env: str = ""
    concurrency: int = 32
    secret: str = ""  # name of the Kubernetes secret the TEACHER_* variables came from (for messages)
    flows_dir: str | None = None  # alternative flows (default: the shipped ones)
    fan_out_scale: float = 1.0  # multiplies every step's fan_out (tests and smoke runs use < 1)
    gate: bool = True  # apply in-flow judge thresholds (False: keep all, record scores: "smoke")
    seed: int = 0
    progress: bool = True
    run_id: str = ""
    tracking_uri: str = ""
    generation_cache: str = ""  # shared reply cache: "" = local under LABPIPE_CACHE, s3://..., "off"


@dataclass
class LeafState:
    record: dict[str, Any]
    flow: Flow
    items: list[dict[str, Any]]
    steps: list[dict[str, Any]] = field(default_factory=list)  # per-step counts and drop reasons


def read_seeds(uri: str) -> list[dict[str, Any]]:
    from labpipe import storage

    path = Path(uri) / "seeds.jsonl" if not storage.is_s3(uri) and Path(uri).is_dir() else uri
    records, problems = [], []
    for n, line in enumerate(storage.read_text(str(path)).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(f"{path}:{n}:{exc.colno}", "json", f"not JSON: {exc.msg}", "one JSON object per line")
            )
            continue
        for key in ("leaf_id", "kind", "seed_examples"):
            if key not in rec:
                problems.append(
                    Problem(
                        f"{path}:{n}:1",
                        "seed-record",
                        f"missing field {key!r}",
                        field=key,
                        fix="produce the file with `labpipe seeds`",
                    )
                )
        if rec.get("kind") not in KINDS:
            problems.append(
                Problem(
                    f"{path}:{n}:1",
                    "seed-record",
                    f"unknown kind {rec.get('kind')!r}",
                    field="kind",
                    fix=f"one of {', '.join(KINDS)}",
                )
            )
        if rec.get("kind") == "knowledge" and not rec.get("chunks"):
            problems.append(
                Problem(
                    f"{path}:{n}:1",
                    "seed-record",
                    "knowledge record without document chunks",
                    field="chunks",
                    fix="check the leaf's document reference",
                )
            )
        records.append(rec)
    if problems:
        raise UserError(problems)
    if not records:
        raise UserError(
            Problem(str(path), "empty", "no seed records", "no changed leaves: nothing to generate")
        )
    return records


class _Progress:
    """tqdm bars: overall (done, in flight, retries, kept) and one per leaf."""

    def __init__(self, leaves: list[str], enabled: bool, concurrency: int):
        from tqdm import tqdm

        self.enabled, self.concurrency = enabled, concurrency
        self.overall = tqdm(desc="generate", unit="req", disable=not enabled, position=0)
        self.leaf = {
            leaf: tqdm(desc=leaf[-40:], unit="req", disable=not enabled, position=i + 1, leave=False)
            for i, leaf in enumerate(leaves)
        }
        self.sent = self.done = self.retries = self.kept = 0

    def expect(self, per_leaf: dict[str, int], to_send: int) -> None:
        self.sent += to_send
        self.overall.total = (self.overall.total or 0) + sum(per_leaf.values())
        for leaf, n in per_leaf.items():
            self.leaf[leaf].total = (self.leaf[leaf].total or 0) + n
        self._refresh()

    def result(self, leaf: str, result, cached: bool) -> None:
        if not cached:
            self.done += 1
            self.retries += max(0, result.attempts - 1)
        self.overall.update(1)
        if leaf in self.leaf:
            self.leaf[leaf].update(1)
        self._refresh()

    def _refresh(self) -> None:
        if self.enabled:
            in_flight = min(self.concurrency, self.sent - self.done)
            self.overall.set_postfix(in_flight=in_flight, retries=self.retries, kept=self.kept, refresh=False)

    def close(self) -> None:
        for bar in [*self.leaf.values(), self.overall]:
            bar.close()


def run_generation(config: GenerationConfig, client: ChatClient | None = None, cache=None) -> dict[str, Any]:
    """Run every leaf's flow up to its critique steps; returns the artifact metadata (counts, tokens).

    `cache`: a GenerationCache to use instead of opening `config.generation_cache` (tests)."""
    from labpipe.generation.cache import open_cache
    from labpipe.generation.client import make_client
    from labpipe.storage import atomic_path
    from labpipe.tracking import maybe_stage_run

    records = read_seeds(config.seeds)
    flows = load_flows(config.flows_dir)
    missing = sorted({r["kind"] for r in records} - set(flows))
    if missing:
        raise UserError(
            Problem(config.flows_dir or "flows", "no-flow", f"no flow handles kind(s) {', '.join(missing)}")
        )
    spec = resolve_model_spec(
        config.teacher,
        config.teacher_model,
        role="teacher",
        api_key_env=config.api_key_env,
        concurrency=config.concurrency,
        secret=config.secret,
    )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    params = {
        **{f"teacher_{k}": v for k, v in spec.describe().items()},
        "concurrency": config.concurrency,
        "leaves": len(records),
        "fan_out_scale": config.fan_out_scale,
        "gate": config.gate,
        "seed": config.seed,
    }
    own_cache = cache is None
    cache = cache if cache is not None else open_cache(config.generation_cache)
    params["generation_cache"] = cache.uri if cache is not None else "off"
    with maybe_stage_run(
        "synthetic_generation", pipeline_run_id=config.run_id, tracking_uri=config.tracking_uri, params=params
    ) as run:
        own_client = client is None
        client = client or make_client(spec)
        stats = CallStats()
        states = {
            r["leaf_id"]: LeafState(r, flows[r["kind"]], start_items(flows[r["kind"]], r)) for r in records
        }
        progress = _Progress(list(states), config.progress, spec.concurrency)
        try:
            with Checkpoint(out / CHECKPOINTS, cache=cache) as checkpoint:
                depth = 0
                while True:
                    active = {leaf: s for leaf, s in states.items() if depth < len(s.flow.generate_steps)}
                    if not active:
                        break
                    _run_depth(active, depth, client, checkpoint, stats, progress, config)
                    depth += 1
        finally:
            progress.close()
            if own_client:
                client.close()
            if own_cache and cache is not None:
                cache.close()
        generated = [_record(s.flow, item) for s in states.values() for item in s.items]
        with atomic_path(out / GENERATED) as tmp:
            tmp.write_text(
                "".join(json.dumps(g, ensure_ascii=False) + "\n" for g in generated), encoding="utf-8"
            )
        wall = time.monotonic() - started
        meta = {
            "records": len(generated),
            "leaves": len(records),
            "requests_sent": stats.sent,
            "requests_reused": stats.cached,
            "requests_cached": stats.cached,
            "cache_hits": stats.cache_hits,
            "cache_corrupt": cache.stats.corrupt if cache is not None else 0,
            "requests_failed": stats.failed,
            "retries": stats.retries,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "wall_time_s": round(wall, 3),
        }
        manifest = {
            **meta,
            "teacher": spec.describe(),
            "generation_cache": params["generation_cache"],
            "gate": config.gate,
            "flows": {f.name: f.version for f in {s.flow.name: s.flow for s in states.values()}.values()},
            "per_leaf": {
                leaf: {
                    "kind": s.record["kind"],
                    "flow": s.flow.name,
                    "records": len(s.items),
                    "steps": s.steps,
                }
                for leaf, s in states.items()
            },
        }
        with atomic_path(out / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        run.log_metrics({k: v for k, v in meta.items()})
        run.log_artifact(out / MANIFEST)
        for leaf, s in states.items():
            if not s.items:
                log.warning("leaf %s yielded nothing: %s", leaf, _reasons(s.steps))
    return meta


def _run_depth(
    active: dict[str, LeafState],
    depth: int,
    client: ChatClient,
    checkpoint: Checkpoint,
    stats: CallStats,
    progress: _Progress,
    config: GenerationConfig,
) -> None:
    planned = {}
    for leaf, s in active.items():
        step = s.flow.generate_steps[depth]
        planned[leaf] = plan(s.flow, step, s.items, seed=config.seed, fan_out_scale=config.fan_out_scale)
    pairs = [(leaf, req) for leaf, reqs in planned.items() for _, req in reqs]
    to_send = sum(1 for _, r in pairs if checkpoint.get(r.request_id) is None)
    progress.expect({leaf: len(reqs) for leaf, reqs in planned.items()}, to_send)
    results = complete(client, pairs, checkpoint, stats, on_result=progress.result)
    for leaf, s in active.items():
        step = s.flow.generate_steps[depth]
        outcome = apply(step, planned[leaf], results, gate=config.gate)
        s.steps.append(
            {
                "step": step.name,
                "in": len(s.items),
                "requests": len(planned[leaf]),
                "out": len(outcome.items),
                "dropped": outcome.dropped,
            }
        )
        s.items = outcome.items
    progress.kept = sum(len(s.items) for s in active.values())


def _record(flow: Flow, item: dict[str, Any]) -> dict[str, Any]:
    rec = {k: v for k, v in item.items() if k != "seed_examples"}
    return {**rec, "flow": flow.name, "flow_version": flow.version}


def _reasons(steps: list[dict[str, Any]]) -> str:
    parts = []
    for s in steps:
        if s["dropped"]:
            parts.append(f"{s['step']}: " + ", ".join(f"{n} {why}" for why, n in s["dropped"].items()))
        if s["out"] == 0:
            break
    return "; ".join(parts) or "no starting items"

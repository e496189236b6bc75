"""The synthetic-generation stage: seed records in, generated records (with checkpoints) out.

    run_generation(GenerationConfig(seeds="seeds.jsonl", out="gen/", teacher=ClientOptions("http://host/v1")))

Output directory `out`:
  checkpoints/<leaf>.jsonl  every completed teacher call, appended and flushed (the resume state)
  generated.jsonl           one record per generated example, written atomically when complete
  manifest.json             counts per leaf and per step (kept, dropped and why), written last

Streamed (the default): every item moves through its flow's steps on its own; its next request is
sent as soon as its previous reply is in, all in one client run (connections kept across steps),
so a slow reply holds up only its own item, and the longest dependency chains go first (stream.py).
The records are then assembled step by step from the
replies (no request is sent twice), so the output is byte-identical to `stream=False`, where all
leaves advance together one step at a time (every request of a step in one concurrent batch, a
barrier between steps). Request ids are the same either way. Rerunning with the same `out` sends
only the requests that have no checkpointed result.

Sharded (the pipeline's fan-out): `shard_plan` (written by seed extraction, see shards.py) and
`shard` select this task's leaves and knowledge chunks; the shards' outputs together equal the
unsharded output, and critique collects them.

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
from labpipe.generation.flow import KINDS, Flow, apply, load_flows, plan, start_items
from labpipe.generation.stream import Stream
from labpipe.llm.failures import DEFAULT_MAX_FAILED_SHARE, check_failures, failure_summary
from labpipe.llm.options import ClientOptions, model_spec
from labpipe.llm.types import ChatClient, ChatResult, stats_of
from labpipe.runs.progress import emit

log = logging.getLogger(__name__)
GENERATED = "generated.jsonl"
FAILURES_TAG = "labpipe.failures"  # on the stage's MLflow run: failure_summary() as JSON
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"


@dataclass
class GenerationConfig:
    seeds: str  # seed records JSONL (local path or s3://)
    out: str  # output directory (local); rerunning with the same one resumes
    teacher: ClientOptions = field(default_factory=ClientOptions)  # empty endpoint/model: TEACHER_* variables
    flows_dir: str | None = None  # alternative flows (default: the shipped ones)
    fan_out_scale: float = 1.0  # multiplies the item-creating steps' fan_out (tests and smoke runs use < 1)
    gate: bool = True  # apply in-flow judge thresholds (False: keep all, record scores: "smoke")
    seed: int = 0
    stream: bool = True  # False: one step at a time for all leaves (a barrier between steps)
    shard_plan: str = ""  # shard plan JSON from seed extraction ("" = every seed record)
    shard: int = 0  # which shard of the plan this run generates
    progress: bool = True
    max_failed_share: float = (
        DEFAULT_MAX_FAILED_SHARE  # more teacher requests failed for good: the stage fails
    )
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
        self.seen = self.total = self.cached = (
            0  # for labpipe.runs.progress events (tqdm counts nothing when disabled)
        )

    def expect(self, per_leaf: dict[str, int], to_send: int) -> None:
        self.sent += to_send
        self.total += sum(per_leaf.values())
        self.overall.total = (self.overall.total or 0) + sum(per_leaf.values())
        for leaf, n in per_leaf.items():
            self.leaf[leaf].total = (self.leaf[leaf].total or 0) + n
        self._refresh()

    def result(self, leaf: str, result, cached: bool) -> None:
        self.seen, self.cached = self.seen + 1, self.cached + bool(cached)
        if not cached:
            self.done += 1
            self.retries += max(0, result.attempts - 1)
        self.overall.update(1)
        if leaf in self.leaf:
            self.leaf[leaf].update(1)
        self._refresh()

    def _refresh(self) -> None:
        emit("synthetic_generation", done=self.seen, total=self.total, cached=self.cached, kept=self.kept)
        if self.enabled:
            in_flight = min(self.concurrency, self.sent - self.done)
            self.overall.set_postfix(in_flight=in_flight, retries=self.retries, kept=self.kept, refresh=False)

    def close(self) -> None:
        for bar in [*self.leaf.values(), self.overall]:
            bar.close()


def run_generation(config: GenerationConfig, client: ChatClient | None = None, cache=None) -> dict[str, Any]:
    """Run every leaf's flow up to its critique steps; returns the artifact metadata (counts, tokens).

    `cache`: a GenerationCache to use instead of opening `config.generation_cache` (tests).
    In a pipeline (a run id), a retried task after a deterministic failure ends at once (retry_guard)."""
    from labpipe.retry_guard import guard

    task = "synthetic_generation" + (f"-shard{int(config.shard)}" if config.shard_plan else "")
    with guard(task, run_id=config.run_id, tracking_uri=config.tracking_uri, root=config.generation_cache):
        return _run_generation(config, client, cache)


def _run_generation(config: GenerationConfig, client: ChatClient | None, cache) -> dict[str, Any]:
    from labpipe.llm.cache import open_cache
    from labpipe.llm.client import make_client
    from labpipe.runs.tracking import maybe_stage_run
    from labpipe.storage import atomic_path

    records = read_seeds(config.seeds)
    if config.shard_plan:
        from labpipe.generation.shards import read_plan, select

        records = select(records, read_plan(config.shard_plan), int(config.shard))
    flows = load_flows(config.flows_dir)
    missing = sorted({r["kind"] for r in records} - set(flows))
    if missing:
        raise UserError(
            Problem(config.flows_dir or "flows", "no-flow", f"no flow handles kind(s) {', '.join(missing)}")
        )
    spec = model_spec(config.teacher, "teacher")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    params = {
        **{f"teacher_{k}": v for k, v in spec.describe().items()},
        "concurrency": config.teacher.concurrency,
        "leaves": len(records),
        "fan_out_scale": config.fan_out_scale,
        "gate": config.gate,
        "seed": config.seed,
        "stream": config.stream,
    }
    if config.shard_plan:
        params["shard"] = int(config.shard)
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
                replies: dict[str, ChatResult] = {}
                if config.stream:
                    Stream(states, client, checkpoint, stats, progress, config, replies).run()
                    checkpoint.flush()  # every new reply is in the shared cache before the output appears
                depth = 0
                while True:  # streamed: assembles the records from `replies`, sending nothing
                    active = {leaf: s for leaf, s in states.items() if depth < len(s.flow.generate_steps)}
                    if not active:
                        break
                    _run_depth(active, depth, client, checkpoint, stats, progress, config, replies)
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
        client_stats = stats_of(client, stats.failed)
        meta["probe_requests"] = client_stats.probes
        failures = failure_summary(client_stats, stats.sent + stats.cached, config.max_failed_share)
        meta["max_failed_share"] = config.max_failed_share
        meta["failure_kinds"] = {kind: r["count"] for kind, r in failures["reasons"].items()}
        served = _model_used(client, spec)
        manifest = {
            **meta,
            "teacher": {**spec.describe(), "model": served},
            "failures": failures,  # how many failed for good, of how many, allowed, why (one example per kind)
            "generation_cache": params["generation_cache"],
            "teacher_client": client_stats.summary(),  # failures by kind with full reasons, dialect
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
        run.log_metrics({k: v for k, v in meta.items() if isinstance(v, int | float)})
        run.log_metrics(client_stats.as_metrics("teacher."))  # every attempt: requests, tokens, kinds
        if failures["failed"]:
            run.set_tags({FAILURES_TAG: json.dumps(failures)[:7500]})  # the run report's "failed requests"
        run.log_artifact(out / MANIFEST)
        for leaf, s in states.items():
            if not s.items:
                log.warning("leaf %s yielded nothing: %s", leaf, _reasons(s.steps))
        try:  # never hand on less data than was asked for: fail with the reasons (a rerun resends those)
            check_failures(
                client_stats,
                stats.sent + stats.cached,
                max_failed_share=config.max_failed_share,
                stage="teacher",
                where=str(out / MANIFEST),
            )
        except UserError:
            (out / GENERATED).unlink(missing_ok=True)
            raise
    return meta


def _run_depth(
    active: dict[str, LeafState],
    depth: int,
    client: ChatClient,
    checkpoint: Checkpoint,
    stats: CallStats,
    progress: _Progress,
    config: GenerationConfig,
    replies: dict[str, ChatResult],
) -> None:
    """One step for every active leaf: requests not in `replies` are sent (all of them when not streamed)."""
    planned = {}
    for leaf, s in active.items():
        step = s.flow.generate_steps[depth]
        planned[leaf] = plan(s.flow, step, s.items, seed=config.seed, fan_out_scale=config.fan_out_scale)
    pairs = [
        (leaf, req) for leaf, reqs in planned.items() for _, req in reqs if req.request_id not in replies
    ]
    if pairs:
        to_send = sum(1 for _, r in pairs if checkpoint.get(r.request_id) is None)
        per_leaf: dict[str, int] = {}
        for leaf, _ in pairs:
            per_leaf[leaf] = per_leaf.get(leaf, 0) + 1
        progress.expect(per_leaf, to_send)
        replies.update(complete(client, pairs, checkpoint, stats, on_result=progress.result))
    results = replies
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
    progress._refresh()


def _model_used(client: ChatClient, spec) -> str:
    """The model the client used (the endpoint's name for it, or the local path); never "" when known."""
    try:
        return str(client.model_name or spec.model or "")
    except UserError:  # the endpoint is down and nothing was sent (every reply came from the cache)
        return spec.model or ""


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

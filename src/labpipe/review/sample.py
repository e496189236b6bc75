"""The review's generation sample and cost (review/stage.py runs them): each changed leaf's seed record
(knowledge: the document and its chunks), a sample of `sample_size` first-step requests through the
leaf's real flow (`run_generation`, so the shared cache keeps every reply for the next run), critique's
yield and drop reasons (knowledge: the faithfulness acceptance), and the leaf's planned requests and
tokens in the next run."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from labpipe.errors import UserError


def seed_records(config, diff, reviews, leaves) -> list[dict[str, Any]]:
    from labpipe.taxonomy.chunking import token_counter
    from labpipe.taxonomy.seeds import knowledge_chunks, seed_record
    from labpipe.taxonomy.stage import _document_repo

    count = None
    records = []
    for leaf_id, leaf in leaves.items():
        review = reviews[leaf_id]
        record = seed_record(leaf, {"status": review.status})
        if leaf.kind == "knowledge":
            count = count or token_counter(config.base_model)
            repo = _document_repo(str(leaf.data["document"]["repo"]), config.taxonomy)
            try:
                record["document"], record["chunks"], warnings = knowledge_chunks(
                    leaf, repo, config.chunk_tokens, count
                )
            except UserError as err:
                review.problems += [asdict(p) for p in err.problems]
                review.document = {"repo": repo, "resolved": False}
                review.flag("fail", f"document does not resolve: {err.problems[0]}")
                continue
            review.problems += [asdict(p) for p in warnings]
            review.document = {
                "repo": record["document"]["repo"],
                "commit": record["document"]["commit"],
                "resolved": True,
                "files": record["document"]["files"],
                "chunks": len(record["chunks"]),
                "chunk_tokens": config.chunk_tokens,
                "tokenizer": config.base_model or "approximate (no base model given)",
                "tokens": sum(c["n_tokens"] for c in record["chunks"]),
            }
            if not record["chunks"]:
                review.flag("fail", "the document yields no text to chunk")
                continue
        record["taxonomy_commit"] = diff.head_commit
        records.append(record)
    return records


def sample_record(record: dict[str, Any], flow, size: int) -> tuple[dict[str, Any], float]:
    """(the seed record cut to `size` first-step requests, the fan-out scale to generate it with).

    Every request of the sample is one the full run sends (request ids do not depend on the cut): a
    knowledge record keeps its first chunk(s) and seed contexts (items are chunk x context, each with its
    own context's examples), a skill leaf's first step keeps its first `size` fan-out indices."""
    if flow.source == "leaf":
        first = flow.generate_steps[0]
        return record, min(1.0, size / first.fan_out)
    contexts: list[str] = []
    for ex in record["seed_examples"]:
        if (ex.get("context") or "") not in contexts:
            contexts.append(ex.get("context") or "")
    keep = contexts[: max(1, min(size, len(contexts)))]
    n_chunks = math.ceil(size / len(keep))
    cut = {
        **record,
        "seed_examples": [ex for ex in record["seed_examples"] if (ex.get("context") or "") in keep],
        "chunks": record["chunks"][:n_chunks],
    }
    return cut, 1.0


def _leaf_dir(leaf_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", leaf_id)


def sample_leaves(config, work, records, reviews, requests, teacher_client, judge_client) -> None:
    from labpipe.critique.stage import REPORT_JSON, CritiqueConfig, run_critique
    from labpipe.generation.flow import load_flows
    from labpipe.generation.stage import GenerationConfig, run_generation
    from labpipe.llm.cache import open_cache
    from labpipe.llm.client import make_client
    from labpipe.llm.options import model_spec

    flows = load_flows()
    teacher_spec = model_spec(config.teacher, "teacher")
    judge_spec = model_spec(config.judge, "judge")
    own = []
    if teacher_client is None:
        teacher_client = make_client(teacher_spec)
        own.append(teacher_client)
    if judge_client is None:
        same = (judge_spec.target, judge_spec.model) == (teacher_spec.target, teacher_spec.model)
        judge_client = teacher_client if same else make_client(judge_spec)
        if judge_client is not teacher_client:
            own.append(judge_client)
    cache = open_cache(config.generation_cache)
    try:
        for record in records:
            review = reviews[record["leaf_id"]]
            flow = flows[record["kind"]]
            cut, scale = sample_record(record, flow, config.sample_size)
            leaf_work = work / _leaf_dir(record["leaf_id"])
            leaf_work.mkdir(parents=True, exist_ok=True)
            seeds = leaf_work / "seeds.jsonl"
            seeds.write_text(json.dumps(cut, ensure_ascii=False) + "\n", encoding="utf-8")
            gen = run_generation(
                GenerationConfig(
                    seeds=str(seeds),
                    out=str(leaf_work / "generated"),
                    teacher=config.teacher,
                    fan_out_scale=scale,
                    gate=config.generation_gate,
                    progress=False,
                    generation_cache=config.generation_cache,
                ),
                client=teacher_client,
                cache=cache,
            )
            requests["teacher_sent"] += gen["requests_sent"]
            requests["teacher_reused"] += gen["requests_reused"]
            manifest = json.loads((leaf_work / "generated" / "manifest.json").read_text(encoding="utf-8"))
            steps = manifest["per_leaf"].get(record["leaf_id"], {}).get("steps", [])
            review.sample = {
                "first_step_requests": config.sample_size,
                "teacher_requests": gen["requests_sent"] + gen["requests_reused"],
                "teacher_requests_sent": gen["requests_sent"],
                "teacher_requests_reused": gen["requests_reused"],
                "generated": gen["records"],
                "generation_dropped": {s["step"]: s["dropped"] for s in steps if s["dropped"]},
            }
            if gen["records"] == 0:
                review.flag(
                    "fail", "the teacher produced no usable record from the sample: " + _gen_reasons(steps)
                )
                continue
            crit_dir = leaf_work / "critique"
            try:
                crit = run_critique(
                    CritiqueConfig(
                        generated=str(leaf_work / "generated"),
                        out=str(crit_dir),
                        judge=config.judge,
                        profile=config.critique_profile,
                        samples_per_skill_leaf=config.samples_per_skill_leaf,
                        seed=config.seed,
                        generation_cache=config.generation_cache,
                        ),
                    client=judge_client,
                    cache=cache,
                )
            except UserError as err:
                if not any(p.rule == "empty-training-set" for p in err.problems):
                    raise
                crit = json.loads((crit_dir / REPORT_JSON).read_text(encoding="utf-8"))["totals"]
            report = json.loads((crit_dir / REPORT_JSON).read_text(encoding="utf-8"))
            requests["judge_sent"] += crit["judge_requests_sent"]
            requests["judge_reused"] += crit["judge_requests_cached"]
            leaf_report = report["leaves"].get(record["leaf_id"], {})
            kept, generated = leaf_report.get("kept", 0), leaf_report.get("generated", gen["records"])
            review.sample.update(
                {
                    "kept": kept,
                    "yield": round(kept / generated, 3) if generated else 0.0,
                    "critique_profile": report["totals"]["profile"],
                    "dropped": dict(leaf_report.get("dropped", {})),
                    "judge_requests_sent": crit["judge_requests_sent"],
                    "judge_requests_reused": crit["judge_requests_cached"],
                }
            )
            if record["kind"] == "knowledge":
                review.sample["faithfulness"] = _faithfulness(report, flow, crit_dir)
            if kept == 0:
                review.flag(
                    "fail",
                    f"critique keeps nothing of the sample ({generated} generated): "
                    + leaf_report.get("note", "").removeprefix("yielded nothing: "),
                )
            elif kept / generated < config.warn_yield:
                review.flag(
                    "warn",
                    f"critique keeps {kept} of {generated} sample records "
                    f"({kept / generated:.0%} < {config.warn_yield:.0%})",
                )
    finally:
        if cache is not None:
            cache.close()
        for client in own:
            client.close()


def _gen_reasons(steps: list[dict[str, Any]]) -> str:
    parts = [
        f"{s['step']}: " + ", ".join(f"{n}x {why}" for why, n in s["dropped"].items())
        for s in steps
        if s["dropped"]
    ]
    return "; ".join(parts) or "no starting items"


def _faithfulness(report: dict[str, Any], flow, crit_dir: Path) -> dict[str, Any]:
    """The share of the sample's questions the faithfulness judge accepts (score at or above the flow's
    threshold), whether or not the profile drops on it (the smoke profile records scores only)."""
    from labpipe.critique.stage import KNOWLEDGE_SET

    step = next((s for s in flow.critique_steps if s.name == "faithfulness"), None)
    judged = report["filters"].get("faithfulness", {})
    checked, dropped = judged.get("checked", 0), judged.get("dropped", 0)
    if step is None or not checked:
        return {"judged": 0, "accepted": 0, "share": None}
    below = 0
    sets = crit_dir / KNOWLEDGE_SET
    if sets.is_file() and step.threshold is not None:
        for line in sets.read_text(encoding="utf-8").splitlines():
            score = json.loads(line)["metadata"]["scores"].get("faithfulness")
            below += score is not None and score < step.threshold
    accepted = checked - dropped - below
    return {
        "judged": checked,
        "accepted": accepted,
        "share": round(accepted / checked, 3),
        "threshold": step.threshold,
    }


def plan_cost(records, reviews, work: Path) -> None:
    """Planned teacher requests of the leaf in the next run (as the shard plan counts them) and tokens
    (the sample's mean tokens per teacher request times that)."""
    from labpipe.generation.checkpoint import iter_rows
    from labpipe.generation.flow import load_flows
    from labpipe.generation.shards import _starting_items, requests_per_item

    flows = load_flows()
    for record in records:
        flow = flows[record["kind"]]
        planned = round(requests_per_item(flow) * max(1, _starting_items(flow, record)))
        rows = []
        for path in sorted(
            (work / _leaf_dir(record["leaf_id"]) / "generated" / "checkpoints").glob("*.jsonl")
        ):
            rows += list(iter_rows(path))
        per_request = (
            sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in rows) / len(rows)
            if rows
            else 0
        )
        reviews[record["leaf_id"]].cost = {
            "planned_teacher_requests": planned,
            "tokens_per_request": round(per_request, 1),
            "planned_tokens": round(planned * per_request),
            "measured_on": len(rows),
        }

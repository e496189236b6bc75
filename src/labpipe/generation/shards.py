"""The shard plan: the seed records split into `shards` parts of about equal planned teacher requests.

Seed extraction writes it next to the seed records (`make_plan`); the pipeline runs one generation
task per shard (`dsl.ParallelFor`), each generating `select(records, plan, shard)`, and critique
collects the shards' outputs (`dsl.Collected`) and merges them (`merge_generated`).

A unit of work is a leaf; a knowledge leaf whose planned requests exceed one shard's share is split
into its document chunks (each chunk x seed context is an independent starting item of the knowledge
flow). Units are placed largest first on the least-loaded shard (deterministic: same seeds, same plan).
Request ids and item ids do not depend on the split, so the shards together send exactly the
requests of the one-shard run, and produce its records.

    {"version": 1, "shards": [{"index": 0, "planned_requests": 120,
                               "parts": [{"leaf_id": "...", "chunks": null | [0, 3, 4]}]}, ...]}
"""

from __future__ import annotations

import json
from typing import Any

from labpipe.errors import Problem, UserError

PLAN_VERSION = 1


def requests_per_item(flow) -> float:
    """Planned teacher requests of the generate steps for one starting item (explode: `vars.n`, else
    the list's maxItems; judge steps assumed to keep everything)."""
    total, width = 0.0, 1.0
    for step in flow.generate_steps:
        total += width * step.fan_out
        grow = step.fan_out
        if step.explode_field:
            prop = (step.schema.get("properties") or {}).get(step.explode_field) or {}
            grow *= int(step.vars.get("n") or prop.get("maxItems") or 1)
        width *= 1 if step.is_judge else grow
    return total


def _starting_items(flow, record: dict[str, Any]) -> int:
    if flow.source == "leaf":
        return 1
    contexts = {ex.get("context") or "" for ex in record.get("seed_examples") or []} or {""}
    return len(record.get("chunks") or []) * len(contexts)


def make_plan(records: list[dict[str, Any]], shards: int, flows_dir: str | None = None) -> dict[str, Any]:
    """At most `shards` shards (fewer when there are fewer units of work), balanced by planned requests."""
    from labpipe.generation.flow import load_flows

    if shards < 1:
        raise UserError(
            Problem(
                "generation_shards", "range", f"must be >= 1, got {shards}", "1 = no fan-out", field="shards"
            )
        )
    flows = load_flows(flows_dir)
    costs = []
    for rec in records:
        flow = flows.get(rec["kind"])
        per_item = requests_per_item(flow) if flow else 1.0
        costs.append((rec, per_item, max(1, _starting_items(flow, rec) if flow else 1)))
    share = sum(per_item * n for _, per_item, n in costs) / shards
    units: list[tuple[float, int, str, int | None]] = []  # (cost, order, leaf, chunk or None)
    for order, (rec, per_item, n) in enumerate(costs):
        chunks = rec.get("chunks") or []
        if rec["kind"] == "knowledge" and shards > 1 and per_item * n > share and len(chunks) > 1:
            units += [(per_item * n / len(chunks), order, rec["leaf_id"], i) for i in range(len(chunks))]
        else:
            units.append((per_item * n, order, rec["leaf_id"], None))
    n_shards = max(1, min(shards, len(units)))
    loads = [0.0] * n_shards
    placed: list[dict[str, list[int] | None]] = [{} for _ in range(n_shards)]
    for cost, _order, leaf, chunk in sorted(units, key=lambda u: (-u[0], u[1], u[3] or 0)):
        target = min(range(n_shards), key=lambda i: (loads[i], i))
        loads[target] += cost
        if chunk is None:
            placed[target][leaf] = None
        else:
            placed[target].setdefault(leaf, [])
            placed[target][leaf].append(chunk)  # type: ignore[union-attr]
    order = {rec["leaf_id"]: i for i, rec in enumerate(records)}
    return {
        "version": PLAN_VERSION,
        "shards": [
            {
                "index": i,
                "planned_requests": round(loads[i]),
                "parts": [
                    {"leaf_id": leaf, "chunks": sorted(chunks) if chunks is not None else None}
                    for leaf, chunks in sorted(placed[i].items(), key=lambda kv: order[kv[0]])
                ],
            }
            for i in range(n_shards)
        ],
    }


def read_plan(uri: str) -> dict[str, Any]:
    from labpipe import storage

    try:
        plan = json.loads(storage.read_text(uri))
    except (json.JSONDecodeError, OSError) as exc:
        raise UserError(Problem(uri, "shard-plan", f"cannot read the shard plan ({exc})")) from None
    if plan.get("version") != PLAN_VERSION or not isinstance(plan.get("shards"), list):
        raise UserError(Problem(uri, "shard-plan", "not a shard plan", "write it with seed extraction"))
    return plan


def select(records: list[dict[str, Any]], plan: dict[str, Any], shard: int) -> list[dict[str, Any]]:
    """The seed records of one shard, in seed-file order, knowledge records cut to the shard's chunks."""
    shards = plan["shards"]
    if not 0 <= shard < len(shards):
        raise UserError(
            Problem("shard", "range", f"shard {shard} of a {len(shards)}-shard plan", field="shard")
        )
    parts = {p["leaf_id"]: p["chunks"] for p in shards[shard]["parts"]}
    known = {r["leaf_id"] for r in records}
    if missing := sorted(set(parts) - known):
        raise UserError(
            Problem("shard_plan", "shard-plan", f"leaves not in the seed records: {', '.join(missing[:5])}")
        )
    out = []
    for rec in records:
        if rec["leaf_id"] not in parts:
            continue
        chunks = parts[rec["leaf_id"]]
        out.append(rec if chunks is None else {**rec, "chunks": [rec["chunks"][i] for i in chunks]})
    return out


def merge_generated(
    parts: list[tuple[list[dict[str, Any]], dict[str, Any]]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One (records, manifest) from the shards' (records, manifest): records in shard order, an exact
    duplicate (same leaf and record id, possible only for a split knowledge leaf) kept once; the
    per-leaf step counts of a split leaf added up."""
    records: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    per_leaf: dict[str, Any] = {}
    for recs, manifest in parts:
        for rec in recs:
            key = (rec.get("leaf_id", ""), rec.get("id", ""))
            if key not in seen:
                seen.add(key)
                records.append(rec)
        for leaf, info in (manifest.get("per_leaf") or {}).items():
            if leaf not in per_leaf:
                per_leaf[leaf] = json.loads(json.dumps(info))
                continue
            have = per_leaf[leaf]
            have["records"] = have.get("records", 0) + info.get("records", 0)
            for mine, theirs in zip(have.get("steps", []), info.get("steps", []), strict=False):
                for key in ("in", "requests", "out"):
                    mine[key] = mine.get(key, 0) + theirs.get(key, 0)
                for why, n in (theirs.get("dropped") or {}).items():
                    mine["dropped"][why] = mine["dropped"].get(why, 0) + n
    merged = {**(parts[0][1] if parts else {}), "per_leaf": per_leaf, "shards": len(parts)}
    return records, merged

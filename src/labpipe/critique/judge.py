"""The paid part of critique: the flows' `stage: critique` judge steps, run with the judge model.

A record is sent to a judge step only if it does not carry that step's score already (scores
recorded by generation are reused, never bought twice) and only while it passes every earlier
filter, so the judge is not paid for records that are dropped anyway. Judge replies are checkpointed
like teacher replies: a rerun of critique resends nothing that completed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labpipe.critique.filters import score_problem
from labpipe.critique.profiles import Profile
from labpipe.critique.report import Ledger
from labpipe.generation.checkpoint import CallStats, Checkpoint, complete
from labpipe.generation.flow import Flow, parse_reply, plan
from labpipe.llm.types import ChatClient


def run_judges(
    records: list[dict[str, Any]],
    flows: dict[str, Flow],
    profile: Profile,
    client: Callable[[], ChatClient],
    checkpoint: Checkpoint,
    stats: CallStats,
    ledger: Ledger,
    *,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """(records that pass every critique judge step, number of scores reused instead of requested)."""
    reused = 0
    depth = 0
    while True:
        active = [r for r in records if depth < len(flows[r["flow"]].critique_steps)]
        if not active:
            return records, reused
        planned, pairs = [], []
        for rec in active:
            flow = flows[rec["flow"]]
            step = flow.critique_steps[depth]
            ledger.checked(step.name, 1)
            if step.name in (rec.get("scores") or {}):
                reused += 1
                continue
            ((_, request),) = plan(flow, step, [rec], seed=seed)
            planned.append((rec, step, request))
            pairs.append((rec["leaf_id"], request))
        results = complete(client(), pairs, checkpoint, stats) if pairs else {}
        failed: dict[str, str] = {}
        for rec, step, request in planned:
            data, problem = parse_reply(step, results.get(request.request_id))
            if problem:
                failed[rec["id"]] = f"judge reply unusable: {problem}"
            else:
                rec["scores"] = {
                    **(rec.get("scores") or {}),
                    step.name: {"score": data["score"], "rationale": data["rationale"]},
                }
        survivors = []
        for rec in records:
            if depth < len(flows[rec["flow"]].critique_steps):
                step = flows[rec["flow"]].critique_steps[depth]
                if rec["id"] in failed:
                    ledger.drop(step.name, rec, failed[rec["id"]])
                    continue
                if why := score_problem(rec, step, profile.threshold(step)):
                    ledger.drop(step.name, rec, why)
                    continue
            survivors.append(rec)
        records = survivors
        depth += 1

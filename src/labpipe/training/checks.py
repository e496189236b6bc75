"""What an SFT task's config can say about itself before anything runs (preflight): the preset's phases load
(the training module's own loader), the scale is one the backend can run, the placement parses."""

from __future__ import annotations

import json
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.paramcheck import in_range, problem
from labpipe.training.task import SftTaskConfig, job_problems, scale_problems

TOLERATION_FIELDS = {"key", "operator", "value", "effect", "tolerationSeconds"}


def problems(cfg: SftTaskConfig) -> list[Problem]:
    from labpipe.training.config import PHASES, PRESETS, load_preset

    found = in_range("max_steps", cfg.max_steps, 0) + in_range("gpus", cfg.gpus, 0, 64)
    try:
        for phase in PHASES:
            load_preset(cfg.preset, phase)
    except UserError as err:
        unknown = cfg.preset not in PRESETS
        found.append(
            problem(
                "preset",
                f"no preset {cfg.preset!r}"
                if unknown
                else f"preset {cfg.preset!r} does not load ({err.problems[0].message})",
                f"use one of {', '.join(PRESETS)}",
            )
        )
    said = {p.field for p in found}  # gpus out of range: said once
    found += [
        p
        for p in scale_problems(cfg.training_backend, cfg.training_nodes, cfg.gpus, cfg.checkpoint_root)
        if p.field not in said
    ]
    return found + job_problems(cfg.queue_name, cfg.deadline_minutes)


def node_selector(value: Any) -> tuple[dict[str, str], list[Problem]]:
    """The node selector (a dict, or its JSON) and the problem when it is not an object of string labels."""
    try:
        selector = json.loads(value) if isinstance(value, str) else value
        if not isinstance(selector, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
        ):
            raise ValueError("expected an object of string labels")
        return selector, []
    except ValueError as exc:
        return {}, [
            problem(
                "node_selector",
                f"does not parse ({exc})",
                'pass a JSON object, e.g. {"nvidia.com/gpu.product": "H100"}',
            )
        ]


def tolerations(value: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The tolerations (a list, or its JSON) and the problem when they are not Kubernetes tolerations."""
    try:
        found = json.loads(value) if isinstance(value, str) else value
        if not isinstance(found, list) or not all(isinstance(t, dict) for t in found):
            raise ValueError("expected a list of objects")
        for t in found:
            unknown = set(t) - TOLERATION_FIELDS
            if unknown:
                raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
            if t.get("operator", "Equal") not in ("Equal", "Exists"):
                raise ValueError(f"operator {t['operator']!r} is not Equal or Exists")
        return found, []
    except ValueError as exc:
        return [], [
            problem(
                "tolerations",
                f"does not parse ({exc})",
                'pass a JSON list, e.g. [{"key": "nvidia.com/gpu", "operator": "Exists", '
                '"effect": "NoSchedule"}]',
            )
        ]

"""What a critique config can say about itself before anything runs (preflight): its profile loads (the
critique module's own loader), the numbers are in range."""

from __future__ import annotations

from labpipe.critique.profiles import PROFILES_DIR, load_profile
from labpipe.critique.stage import CritiqueConfig
from labpipe.errors import Problem, UserError
from labpipe.llm.options import option_problems
from labpipe.paramcheck import in_range, problem


def problems(cfg: CritiqueConfig) -> list[Problem]:
    found = in_range("samples_per_skill_leaf", cfg.samples_per_skill_leaf, 1, 100_000)
    found += in_range("max_failed_share", cfg.max_failed_share, 0.0, 1.0) + option_problems(cfg.judge)
    try:
        load_profile(cfg.profile)
    except UserError:
        shipped = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        found.append(
            problem("profile", f"no critique profile {cfg.profile!r}", f"use one of {', '.join(shipped)}")
        )
    return found

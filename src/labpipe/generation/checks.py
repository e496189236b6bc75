"""What a generation config can say about itself before anything runs (preflight). The client's settings
(endpoint, model, key) are checked by the client's own probe (labpipe.llm), not here."""

from __future__ import annotations

from labpipe.errors import Problem
from labpipe.generation.stage import GenerationConfig
from labpipe.llm.options import option_problems
from labpipe.paramcheck import in_range


def problems(cfg: GenerationConfig) -> list[Problem]:
    return in_range("max_failed_share", cfg.max_failed_share, 0.0, 1.0) + option_problems(cfg.teacher)
